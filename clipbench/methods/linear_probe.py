"""Built-in plugin: a linear probe on frozen image features, initialised from the zero-shot head.

What is implemented: a linear head (weights + bias) on frozen image embeddings,
initialised from the zero-shot text classifier ("zero-shot init", WiSE-FT's
appendix) and pulled back toward it by an L2 penalty on W - W_zs, whose
strength is chosen on the validation split, never on test data.  It resembles
LP++ (Huang et al., CVPR 2024) in starting from and staying near the text
classifier, but is not LP++: LP++ blends visual class prototypes with the text
embeddings through learned per-class multipliers and sets its step sizes from
a Lipschitz bound; none of that is here.

Deviation card: `LinearProbe.deviations` below; `clipbench show method linear-probe`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import best_on_validation, full_batch


@dataclass(frozen=True)
class LinearProbeConfig(MethodConfig):
    """Full-batch AdamW on cached features; ``penalties`` is the grid searched on validation."""

    lr: float = option(1e-3, "AdamW learning rate of the head (full batch)")
    steps: int = option(300, "full-batch steps")
    penalties: tuple[float, ...] = option((0.0, 0.01, 0.1, 1.0, 10.0),
                                          "strengths of the L2 pull toward the zero-shot head; one is chosen "
                                          "on validation")


class LinearHead(Adapted):
    """Zero-shot CLIP everywhere except the adapted task, which uses the trained head."""

    def __init__(self, model, task, weight, bias):
        super().__init__(model, trainable=weight.numel() + bias.numel(), task=task, added=[weight, bias])
        self.weight, self.bias = weight, bias

    def logits_from_features(self, features, task):
        if not self.is_own_task(task):
            return super().logits_from_features(features, task)
        return self.model.logit_scale * features @ self.weight.T + self.bias


class LinearProbe(Method):
    name = "linear-probe"
    citation = ("Zero-shot-initialised linear probe with an L2 pull toward the zero-shot head (Radford et al. "
                "2021; Wortsman et al. 2022, appendix); resembles, but is not, LP++ (Huang et al., CVPR 2024)")
    summary = "linear head on frozen image features, zero-shot initialised, L2 toward it"
    config_class = LinearProbeConfig
    reference = ("paper only: the zero-shot-initialised linear classifier of WiSE-FT (Wortsman et al., CVPR 2022), "
                 "as mlfoundations/wise-ft trains it: src/models/finetune.py with --freeze-encoder, "
                 "src/models/zeroshot.py")
    deviations = (
        Deviation("regulariser",
                  "AdamW weight decay 0.1, toward zero",
                  "an L2 pull toward the zero-shot head, its strength chosen on validation from 5 values; no weight "
                  "decay",
                  True, "decay toward zero forgets the zero-shot head that a 16-shot probe should stay near"),
        Deviation("optimiser and schedule",
                  "mini-batch AdamW, cosine after 500 warm-up steps, gradient clipping 1.0, 10 epochs",
                  "full-batch AdamW lr 1e-3, 300 steps at a constant rate, no clipping",
                  True, "a 16-shot feature matrix fits in one batch"),
        Deviation("logit scale",
                  "folded into the head: its initial weights are the zero-shot weights x logit_scale",
                  "kept outside the head: logit_scale x f W^T + b",
                  True, "the same function at the start, but the gradient on W is logit_scale times larger, so one "
                        "lr means larger steps"),
        Deviation("data",
                  "the full training set, part of it held out for validation",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        feats = fewshot.features(model)
        val_feats = fewshot.features(model, "val")
        with torch.no_grad():
            w0 = Adapted(model).text_head(task)
        scale = float(model.logit_scale.detach())
        labels = fewshot.labels.to(feats.device)
        # every full-batch step is an epoch; the fits of the penalties report theirs one after the other
        epochs, done = len(config.penalties) * config.steps, itertools.count(1)

        def fit_and_score(penalty):
            w = w0.clone().requires_grad_(True)
            b = torch.zeros(len(w0), device=w0.device, requires_grad=True)
            opt = torch.optim.AdamW([w, b], lr=config.lr, weight_decay=0.0)
            full_batch(opt, lambda: F.cross_entropy(scale * feats @ w.T + b, labels) + penalty * (w - w0).pow(2).sum(),
                       config.steps, lambda _, __, loss: ctx.epoch_finished(next(done), epochs, loss))
            w, b = w.detach(), b.detach()
            val_acc = float(((scale * val_feats @ w.T + b).argmax(1).cpu() == fewshot.val_labels).float().mean())
            return (val_acc,), (w, b)

        _, (w, b) = best_on_validation(config.penalties, fit_and_score, ctx.progress)
        return LinearHead(model, task, w, b)


@hookimpl
def clipbench_register_methods(register):
    register(LinearProbe())
