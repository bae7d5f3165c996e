"""Built-in plugin: CLIP-Adapter, residual bottleneck adapters on both towers' features.

Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature
Adapters", IJCV 2024 (arXiv 2110.04544).  A two-layer bottleneck MLP
(reduction 4, ReLU, no biases) on the frozen encoder's output, blended
residually: f' = ratio * A(f) + (1 - ratio) * f with ratio 0.2 (the paper's
choice for generic datasets); here on both towers as in the A-CLIP paper's
comparison.  The encoders stay frozen, so support features are encoded once.
Training: the paper's 200 epochs, batch 32; AdamW lr 1e-3 (not stated in what
could be read here; the common re-implementation value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import count_parameters, minibatches, steps_per_epoch, warmup_cosine


@dataclass(frozen=True)
class ClipAdapterConfig(MethodConfig):
    reduction: int = option(4, "bottleneck width = feature width / this", source="CLIP-Adapter: 4")
    ratio: float = option(0.2, "residual ratio: how much of the adapted feature is mixed in", source="CLIP-Adapter: 0.2")
    lr: float = option(1e-3, "AdamW learning rate of the adapters", search=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                       source="common re-implementation value")
    batch_size: int = option(32, "features per step", source="CLIP-Adapter: 32")
    epochs: int = option(200, "passes over the support set", source="CLIP-Adapter: 200")


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

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        feats = fewshot.features(model)
        with torch.no_grad():
            text = model.encode_text(task.train_prompts())
        dim = feats.shape[1]
        image_adapter = Bottleneck(dim, config.reduction).to(feats.device)
        text_adapter = Bottleneck(dim, config.reduction).to(feats.device)
        params = list(image_adapter.parameters()) + list(text_adapter.parameters())
        opt = torch.optim.AdamW(params, lr=config.lr)
        total = config.epochs * steps_per_epoch(len(feats), config.batch_size)
        sched = warmup_cosine(opt, total, 0.0)
        labels = fewshot.labels.to(feats.device)
        scale = float(model.logit_scale.detach())
        for step, idx in enumerate(minibatches(len(feats), config.batch_size, config.epochs, ctx.generator,
                                               feats.device), start=1):
            logits = scale * blend(feats[idx], image_adapter, config.ratio) @ blend(text, text_adapter, config.ratio).T
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ctx.progress(step, total)
        return AdaptedFeatures(model, task, image_adapter, text_adapter, config.ratio)


@hookimpl
def clipbench_register_methods(register):
    register(ClipAdapter())
