"""Built-in plugin: CoCoOp, CoOp's context plus an image-conditioned token from a small meta-network.

Zhou, Yang, Loy, Liu, "Conditional Prompt Learning for Vision-Language Models",
CVPR 2022.  Each image's prompts are ``(v_1 + pi) ... (v_M + pi) <class>.``
where pi = meta_net(image feature) is one token offset per image, from a
Linear-ReLU-Linear network with a 1/16 bottleneck; the context and the
meta-net train, both towers stay frozen.  Defaults from the paper and its
released config (KaiyangZhou/CoOp, configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1):
M = 4 context tokens initialised from "a photo of a", SGD lr 0.002, momentum 0.9,
weight decay 5e-4, batch 1, 10 epochs, cosine after one warm-up epoch at 1e-5.
Training sees augmented views (random resized crop and flip), as the
reference's transforms: 10 per support image, drawn from the cell's seed and
encoded once by the frozen image tower; epoch e trains on view e mod 10.
Scoring builds every image's own prompts, so it costs one text-tower pass per
(image, class) pair, as in the paper.

Deviation card: `CoCoOp.deviations` below; `clipbench show method cocoop`.
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
from clipbench.methods.coop import prompt_tokens_or_none, warmup_then_cosine
from clipbench.methods.prompts import PromptTokens, check_text_tower, encode_with_context, init_context
from clipbench.training import steps_per_epoch, train_epochs


@dataclass(frozen=True)
class CoCoOpConfig(MethodConfig):
    n_ctx: int = option(4, "context tokens M", source="CoCoOp: 4")
    ctx_init: str = option("a photo of a", "words the context starts from", source="CoCoOp: 'a photo of a'")
    bottleneck: int = option(16, "meta-net hidden width = image feature width / this", source="CoCoOp: 16")
    lr: float = option(0.002, "SGD learning rate", search=[2e-4, 6e-4, 2e-3, 6e-3, 2e-2, 6e-2],
                       source="CoCoOp: 0.002")
    momentum: float = option(0.9, "SGD momentum", source="CoCoOp: 0.9")
    weight_decay: float = option(5e-4, "SGD weight decay", source="CoCoOp: 5e-4")
    batch_size: int = option(1, "images per step", source="CoCoOp: 1")
    epochs: int = option(10, "passes over the support set", source="CoCoOp: 10")
    warmup_lr: float = option(1e-5, "constant learning rate of the warm-up epoch", source="CoCoOp: 1e-5")
    train_views: int = option(10, "cached augmented views per support image to train on (epoch e: view e mod this)",
                              source="Dassl: a fresh crop and flip every epoch; clipbench caches this many",
                              low=1, high=64)
    eval_batch: int = option(64, "images per batch when scoring (each image builds its own prompts)")


class MetaNet(nn.Module):
    def __init__(self, feature_dim: int, ctx_dim: int, bottleneck: int):
        super().__init__()
        hidden = max(1, feature_dim // bottleneck)
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ctx_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def conditional_context(context: torch.Tensor, meta: MetaNet, features: torch.Tensor) -> torch.Tensor:
    """(B, M, width): the shared context shifted by each image's meta-net token."""
    return context.unsqueeze(0) + meta(features).unsqueeze(1)


class ConditionalPrompts(Adapted):
    """Each image scored against its own prompts (context + its meta-net token + class names), on every
    label space: CoCoOp's base-to-new and cross-dataset evaluation apply the learned context and meta-net
    to the new class names.  A label space whose names do not fit the text context falls back to zero-shot,
    and the cell's notes say which."""

    def __init__(self, model, task, context, meta, prompts, eval_batch):
        trainable = context.numel() + sum(p.numel() for p in meta.parameters())
        super().__init__(model, trainable=trainable, task=task, added=[context, meta])
        self.context, self.meta, self.prompts, self.eval_batch = context, meta.eval(), prompts, eval_batch
        self._prompts = {tuple(task.classnames): prompts}

    def prompts_for(self, features: torch.Tensor, prompts: PromptTokens | None = None) -> torch.Tensor:
        """(B, C, D) class embeddings of each image's prompts (of the adapted task's classes by default)."""
        return encode_with_context(self.model.module, prompts or self.prompts,
                                   conditional_context(self.context, self.meta, features))

    def _prompts_of(self, task) -> PromptTokens | None:
        key = tuple(task.classnames)
        if key not in self._prompts:
            self._prompts[key] = prompt_tokens_or_none(self.model, task.classnames, self.context.shape[0])
            if self._prompts[key] is None:
                self.notes.setdefault("zero-shot label spaces", []).append(task.name)
        return self._prompts[key]

    def logits_from_features(self, features, task):
        prompts = self._prompts_of(task)
        if prompts is None:
            return super().logits_from_features(features, task)
        out = []
        for start in range(0, len(features), self.eval_batch):
            f = features[start:start + self.eval_batch]
            out.append(self.model.logit_scale * torch.einsum("bd,bcd->bc", f, self.prompts_for(f, prompts)))
        return torch.cat(out)


class CoCoOp(Method):
    name = "cocoop"
    citation = "Zhou, Yang, Loy, Liu, Conditional Prompt Learning for Vision-Language Models (CoCoOp), CVPR 2022"
    summary = "CoOp's context plus a per-image token from a Linear-ReLU-Linear meta-net; towers frozen"
    config_class = CoCoOpConfig
    reference = ("KaiyangZhou/CoOp: trainers/cocoop.py, configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml, "
                 "scripts/cocoop/base2new_train.sh, run under Dassl")
    deviations = (
        cached_views_deviation("random resized crop (Dassl's area 0.08-1) + horizontal flip of every training "
                               "image, every epoch (INPUT.TRANSFORMS)"),
        AUGMENTATION_ARITHMETIC,
        Deviation("precision",
                  "fp16 (TRAINER.COCOOP.PREC: CLIP, the context and the meta-net in half precision)",
                  "fp32",
                  True, "one precision for every method; fp16 rounding changes every update"),
        Deviation("schedule",
                  "one warm-up epoch at 1e-5, then cosine stepped once per epoch with T_max = all epochs",
                  "one warm-up epoch at 1e-5, then cosine stepped every image over the remaining epochs, down to 0",
                  True, "a per-step curve; the two stay within about one epoch of each other"),
        Deviation("what is searched",
                  "lr 0.002 fixed",
                  "lr chosen by `clipbench tune` on the validation split (2e-4 to 6e-2); the paper's value with "
                  "--defaults",
                  True, "full-data learning rates rarely suit 16 shots; every method is tuned the same way, never "
                        "on test data"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        module = model.module
        check_text_tower(module)
        module.requires_grad_(False)
        prompts = PromptTokens(model, task.classnames, config.n_ctx)
        context = init_context(model, config.n_ctx, config.ctx_init, ctx.generator).requires_grad_(True)
        feats = fewshot.views(model, config.train_views, "train")  # the image tower is frozen: cached views
        labels = fewshot.labels.to(feats.device)
        meta = MetaNet(feats.shape[-1], context.shape[1], config.bottleneck).to(feats.device)
        params = [context, *meta.parameters()]
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        sched = warmup_then_cosine(opt, steps_per_epoch(len(labels), config.batch_size), config.epochs, config.lr,
                                   config.warmup_lr)
        scale = model.logit_scale.detach()

        def loss(view, idx):
            images = feats[view, idx]
            text = encode_with_context(module, prompts, conditional_context(context, meta, images))
            return F.cross_entropy(scale * torch.einsum("bd,bcd->bc", images, text), labels[idx])

        meta.train()
        train_epochs(opt, len(labels), config.batch_size, config.epochs, ctx, loss, scheduler=sched,
                     device=feats.device, views=config.train_views)
        meta.requires_grad_(False)
        return ConditionalPrompts(model, task, context.detach(), meta, prompts, config.eval_batch)


@hookimpl
def clipbench_register_methods(register):
    register(CoCoOp())
