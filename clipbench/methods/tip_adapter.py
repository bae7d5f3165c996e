"""Built-in plugin: Tip-Adapter-F, a key-value cache of the support set whose keys are fine-tuned.

Zhang, Zhang, Fang, Gao, Li, Dai, Qiao, Li, "Tip-Adapter: Training-free Adaption
of CLIP for Few-shot Classification", ECCV 2022 (code: gaopengcuhk/Tip-Adapter).
The cache holds one embedding per support image as keys F (the mean of its
augmented views, below) and their one-hot labels L as values; an image f is scored

    logits = logit_scale * f W^T  +  alpha * exp(-beta * (1 - f F^T)) L

(zero-shot CLIP plus the cache).  The training-free Tip-Adapter is that cache
as built; Tip-Adapter-F then fine-tunes the keys F (AdamW
lr 0.001, eps 1e-4, 20 epochs, cosine, with the paper's initial alpha 1.17 and
beta 1 of its ImageNet config) while the encoders, values and classifier stay
frozen.  alpha and beta are then searched on the validation split, over the
code's grid (beta in [0.1, 7), 200 steps; alpha in [0.1, 3), 20 steps), never on
test data (the released code also picks its best epoch on the test set; here the
last epoch is kept).  As in the code's build_cache_model, each key is the
renormalised mean of 10 augmented views of its support image (random resized crop, scale 0.5-1, and
flip), and training scores augmented views against those keys; the training
views are a fixed set of 10 per image drawn from the cell's seed (epoch e uses
view e mod 10) where the code draws fresh ones every epoch.

Deviation card: `TipAdapterF.deviations` below; `clipbench show method tip-adapter-f`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.augment import AUGMENTATION_ARITHMETIC
from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import steps_per_epoch, train_epochs


@dataclass(frozen=True)
class TipAdapterFConfig(MethodConfig):
    lr: float = option(1e-3, "AdamW learning rate of the cache keys", search=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                       source="Tip-Adapter: 0.001")
    epochs: int = option(20, "fine-tuning epochs; 0 is the training-free Tip-Adapter", source="Tip-Adapter-F: 20")
    batch_size: int = option(256, "cache entries per step", source="Tip-Adapter-F: 256")
    init_alpha: float = option(1.17, "residual ratio alpha before the validation search", source="released configs")
    init_beta: float = option(1.0, "sharpness beta before the validation search", source="released configs")
    search_scale: tuple[float, float] = option((7.0, 3.0), "(beta, alpha) upper ends of the validation search",
                                               source="released configs")
    search_steps: tuple[int, int] = option((200, 20), "(beta, alpha) grid points of the validation search",
                                           source="released configs")
    augment_views: int = option(10, "augmented views per support image averaged into its cache key",
                                source="Tip-Adapter: augment_epoch 10", low=1, high=64)
    train_views: int = option(10, "cached augmented views per support image to train on (epoch e: view e mod this)",
                              source="Tip-Adapter-F: a fresh view every epoch; clipbench caches this many",
                              low=1, high=64)


def cache_logits(features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.exp(-beta * (1.0 - features @ keys.T)) @ values


class CacheModel(Adapted):
    """Zero-shot CLIP elsewhere; on the adapted task the zero-shot logits plus alpha times the cache's."""

    def __init__(self, model, task, keys, values, alpha, beta, trained: bool):
        super().__init__(model, trainable=keys.numel() if trained else 0, task=task,
                         added=[keys] if trained else [])
        self.keys, self.values, self.alpha, self.beta = keys, values, alpha, beta

    def logits_from_features(self, features, task):
        zero_shot = super().logits_from_features(features, task)
        if not self.is_own_task(task):
            return zero_shot
        return zero_shot + self.alpha * cache_logits(features, self.keys, self.values, self.beta)


def search_alpha_beta(zero_shot: torch.Tensor, cache_fn, labels: torch.Tensor, config) -> tuple[float, float]:
    """The (alpha, beta) of the code's grid with the best validation accuracy (ties: the first)."""
    betas = [i * (config.search_scale[0] - 0.1) / config.search_steps[0] + 0.1 for i in range(config.search_steps[0])]
    alphas = [i * (config.search_scale[1] - 0.1) / config.search_steps[1] + 0.1 for i in range(config.search_steps[1])]
    best = (-1.0, config.init_alpha, config.init_beta)
    for beta in betas:
        cached = cache_fn(beta)
        for alpha in alphas:
            acc = float(((zero_shot + alpha * cached).argmax(1) == labels).float().mean())
            if acc > best[0]:
                best = (acc, alpha, beta)
    return best[1], best[2]


class TipAdapterF(Method):
    name = "tip-adapter-f"
    citation = ("Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification, ECCV 2022 "
                "(Tip-Adapter-F; alpha and beta chosen on validation)")
    summary = ("a cache of the support images' augmented embeddings beside zero-shot CLIP; keys fine-tuned, alpha/beta "
               "on validation")
    config_class = TipAdapterFConfig
    reference = ("gaopengcuhk/Tip-Adapter: main.py (run_tip_adapter_F), utils.py (build_cache_model, search_hp), "
                 "configs/*.yaml; main_imagenet.py for ImageNet")
    deviations = (
        Deviation("training inputs",
                  "freshly augmented views every epoch (random resized crop, scale 0.5-1, and flip), scored against "
                  "the keys",
                  "10 augmented views per support image drawn once from the cell's seed, independent of the keys' "
                  "views; epoch e trains on view e mod 10",
                  True, "the image tower is frozen, so a fixed set of views is encoded once (and cached across "
                        "runs) instead of 20 fresh passes through the encoder"),
        AUGMENTATION_ARITHMETIC,
        Deviation("key averaging",
                  "the mean of the 10 views' raw image features, then normalised",
                  "the mean of the 10 views' L2-normalised embeddings, then normalised",
                  True, "the harness serves (and caches) normalised embeddings; views whose raw features differ in "
                        "norm weigh differently"),
        Deviation("logit scale",
                  "zero-shot logits 100 x f W^T, hard-coded (training, search and test)",
                  "the model's logit_scale",
                  True, "differs wherever a model's scale is not 100 (the embedded model's is about 17): alpha then "
                        "weighs the cache against zero-shot logits of another size"),
        Deviation("what is searched",
                  "(alpha, beta) on the few-shot validation split in main.py; on the test set in main_imagenet.py",
                  "(alpha, beta) on the validation split, always; lr by `clipbench tune` on validation",
                  True, "no choice may see test data"),
        Deviation("checkpoint",
                  "the epoch with the best TEST accuracy (best_F_*.pt); the reported accuracy is the larger of that "
                  "and the post-search test accuracy",
                  "the last epoch, scored once",
                  True, "test data may not choose anything"),
        Deviation("per-dataset settings",
                  "init alpha, search range and epochs per dataset (e.g. Caltech101: init alpha 3, search scale "
                  "(12, 5); DTD: (13, 13); EuroSAT: 100 epochs)",
                  "ImageNet's config for every task: init alpha 1.17, beta 1, search scale (7, 3), 20 epochs",
                  True, "the authors set those values for their datasets; clipbench's tasks are others"),
        Deviation("precision",
                  "fp16 (CLIP, keys, values and the adapter in half precision on CUDA)",
                  "fp32",
                  True, "one precision for every method"),
        Deviation("zero-shot prompts",
                  "one hand-written template per dataset (7 averaged for ImageNet)",
                  "the task's templates, averaged",
                  True, "a task's templates are part of its definition and serve every method's zero-shot head"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        val = fewshot.features(model, "val")
        labels = fewshot.labels.to(val.device)
        values = F.one_hot(labels, task.num_classes).float()
        zero_shot = Adapted(model, task=task)
        with torch.no_grad():
            zs_val = zero_shot.logits_from_features(val, task)
        # the training-free Tip-Adapter's cache: each key the renormalised mean of its image's augmented views
        keys = F.normalize(fewshot.views(model, config.augment_views, "keys").mean(0), dim=-1)
        if config.epochs > 0:
            train = fewshot.views(model, config.train_views, "train")
            with torch.no_grad():
                zs_train = torch.stack([zero_shot.logits_from_features(view, task) for view in train])
            keys.requires_grad_(True)
            opt = torch.optim.AdamW([keys], lr=config.lr, eps=1e-4)
            total = config.epochs * steps_per_epoch(len(labels), config.batch_size)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)

            def loss(view, idx):
                query = train[view, idx]
                logits = zs_train[view, idx] + config.init_alpha * cache_logits(query, keys, values,
                                                                                config.init_beta)
                return F.cross_entropy(logits, labels[idx])

            train_epochs(opt, len(labels), config.batch_size, config.epochs, ctx, loss, scheduler=sched,
                         device=val.device, views=config.train_views)
            keys = keys.detach()
        with torch.no_grad():
            alpha, beta = search_alpha_beta(zs_val, lambda b: cache_logits(val, keys, values, b),
                                            fewshot.val_labels.to(val.device), config)
        adapted = CacheModel(model, task, keys, values, alpha, beta, trained=config.epochs > 0)
        adapted.notes = {"alpha": round(alpha, 4), "beta": round(beta, 4)}
        return adapted


@hookimpl
def clipbench_register_methods(register):
    register(TipAdapterF())
