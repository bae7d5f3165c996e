"""Built-in plugin: CLIP-Adapter, residual bottleneck adapters on both towers' features.

Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature
Adapters", IJCV 2024 (arXiv 2110.04544).  A two-layer bottleneck MLP
(reduction 4, ReLU, no biases) on the frozen encoder's output, blended
residually: f' = ratio * A(f) + (1 - ratio) * f with ratio 0.2 (the paper's
choice for generic datasets); here on both towers as in the A-CLIP paper's
comparison.  The encoders stay frozen, so the trainer's augmentation (random
resized crop and flip) is a fixed set of 10 augmented views per support image,
encoded once and cached; epoch e trains on view e mod 10.
Training: the paper's 200 epochs, batch 32; AdamW lr 1e-3 (not stated in what
could be read here; the common re-implementation value).

Deviation card: `ClipAdapter.deviations` below; `clipbench show method clip-adapter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipbench.augment import AUGMENTATION_ARITHMETIC, cached_views_deviation
from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import count_parameters, steps_per_epoch, train_epochs, warmup_cosine


@dataclass(frozen=True)
class ClipAdapterConfig(MethodConfig):
    reduction: int = option(4, "bottleneck width = feature width / this", source="CLIP-Adapter: 4")
    ratio: float = option(0.2, "residual ratio: how much of the adapted feature is mixed in", source="CLIP-Adapter: 0.2")
    lr: float = option(1e-3, "AdamW learning rate of the adapters", search=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                       source="common re-implementation value")
    batch_size: int = option(32, "features per step", source="CLIP-Adapter: 32")
    epochs: int = option(200, "passes over the support set", source="CLIP-Adapter: 200")
    train_views: int = option(10, "cached augmented views per support image to train on (epoch e: view e mod this)",
                              source="Dassl: a fresh crop and flip every epoch; clipbench caches this many",
                              low=1, high=64)


class Bottleneck(nn.Module):
    def __init__(self, dim: int, reduction: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(dim // reduction, dim, bias=False), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.net(x)


def blend(features: torch.Tensor, adapter: nn.Module, ratio: float) -> torch.Tensor:
    return F.normalize(ratio * adapter(features) + (1 - ratio) * features, dim=-1)


class AdaptedFeatures(Adapted):
    def __init__(self, model, task, image_adapter, text_adapter, ratio):
        trainable = count_parameters(image_adapter.parameters()) + count_parameters(text_adapter.parameters())
        super().__init__(model, trainable=trainable, task=task, added=[image_adapter, text_adapter])
        self.image_adapter, self.text_adapter, self.ratio = image_adapter.eval(), text_adapter.eval(), ratio

    def transform_image_features(self, features):
        return blend(features, self.image_adapter, self.ratio)

    def encode_text(self, texts):
        return blend(self.model.encode_text(texts), self.text_adapter, self.ratio)


class ClipAdapter(Method):
    name = "clip-adapter"
    citation = "Gao et al., CLIP-Adapter: Better Vision-Language Models with Feature Adapters, IJCV 2024"
    summary = "residual bottleneck MLPs on the image and text features (encoders frozen)"
    config_class = ClipAdapterConfig
    reference = ("gaopengcuhk/CLIP-Adapter: clip_adapter.py (the authors' trainer, under Dassl); mit-ll/IIMM: "
                 "models/clip.py CLIPAdapter, models/common.py Adapter (both towers, the A-CLIP paper's comparison)")
    deviations = (
        Deviation("what trains",
                  "CLIP-Adapter's code: one adapter, on the image features only",
                  "one adapter on each tower's features (IIMM's variant)",
                  True, "the A-CLIP paper's comparison, whose PEFT baselines clipbench follows, adapts both towers"),
        Deviation("adapter input",
                  "the encoders' raw (unnormalised) features; the blend is normalised afterwards (both references)",
                  "the L2-normalised embeddings; the blend is normalised afterwards",
                  True, "the embedding cache stores normalised embeddings; the MLP sees inputs of norm 1, not the "
                        "encoder's scale, so ratio 0.2 mixes a different share"),
        cached_views_deviation("CLIP-Adapter (which ships no config; its README points to CoOp's): Dassl's random "
                               "resized crop (area 0.08-1) and flip, fresh every epoch through the frozen image "
                               "encoder; mit-ll/IIMM: none (open_clip's evaluation preprocessing)"),
        AUGMENTATION_ARITHMETIC,
        Deviation("optimiser and schedule",
                  "Dassl's build_optimizer and build_lr_scheduler from a config the repository does not ship (IIMM: "
                  "SGD momentum 0.9, lr 1e-6, weight decay 1e-4, constant, batch 128, 30 epochs)",
                  "AdamW lr 1e-3 (torch's default weight decay 0.01), cosine stepped per batch without warm-up, "
                  "batch 32, 200 epochs",
                  True, "the paper's 200 epochs and batch 32; its optimiser is not in what was read, so the common "
                        "re-implementation value"),
        Deviation("batching",
                  "Dassl drops the last partial batch of every epoch",
                  "keeps it",
                  True, "every support example is seen every epoch"),
        Deviation("precision",
                  "IIMM: fp16 autocast in training (CLIP-Adapter's own code runs CLIP in fp32)",
                  "fp32",
                  True, "one precision for every method"),
        Deviation("checkpoint",
                  "IIMM: the epoch with the best validation accuracy (CLIP-Adapter's Dassl trainer: the last, as "
                  "here)",
                  "the last epoch",
                  True, "clipbench evaluates no intermediate epoch: every method is scored at the end of its "
                        "schedule"),
        Deviation("what is searched",
                  "lr fixed",
                  "lr chosen by `clipbench tune` on the validation split (1e-5 to 1e-2); the paper's value with "
                  "--defaults",
                  True, "full-data learning rates rarely suit 16 shots; every method is tuned the same way, never "
                        "on test data"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        feats = fewshot.views(model, config.train_views, "train")
        with torch.no_grad():
            text = model.encode_text(task.train_prompts())
        dim = feats.shape[-1]
        image_adapter = Bottleneck(dim, config.reduction).to(feats.device)
        text_adapter = Bottleneck(dim, config.reduction).to(feats.device)
        params = list(image_adapter.parameters()) + list(text_adapter.parameters())
        opt = torch.optim.AdamW(params, lr=config.lr)
        labels = fewshot.labels.to(feats.device)
        sched = warmup_cosine(opt, config.epochs * steps_per_epoch(len(labels), config.batch_size), 0.0)
        scale = float(model.logit_scale.detach())

        def loss(view, idx):
            logits = scale * blend(feats[view, idx], image_adapter, config.ratio) @ \
                blend(text, text_adapter, config.ratio).T
            return F.cross_entropy(logits, labels[idx])

        train_epochs(opt, len(labels), config.batch_size, config.epochs, ctx, loss, scheduler=sched,
                     device=feats.device, views=config.train_views)
        return AdaptedFeatures(model, task, image_adapter, text_adapter, config.ratio)


@hookimpl
def clipbench_register_methods(register):
    register(ClipAdapter())
