"""Built-in plugin: CoOp, learned context vectors in front of the class names (text tower frozen).

Zhou, Yang, Loy, Liu, "Learning to Prompt for Vision-Language Models", IJCV 2022.
The prompt of class c is ``v_1 ... v_M <class c>.`` with M learned vectors in the
token-embedding space, shared by all classes (generic context, the paper's
default) and the class name at the end; image and text towers stay frozen and
only the M x width context trains, with cross-entropy over logit_scale *
image . prompt.  Defaults from the paper and its released configs
(KaiyangZhou/CoOp, configs/trainers/CoOp): M = 16 randomly initialised
(N(0, 0.02)), SGD lr 0.002, momentum 0.9, weight decay 5e-4, batch 32, 200
epochs for 16 shots, cosine schedule after one warm-up epoch at a constant 1e-5.
The frozen image tower sees augmented views (random resized crop and flip), as
the reference's transforms: 10 per support image, drawn from the cell's seed
and encoded once; epoch e trains on view e mod 10.

Where 16 context tokens and the class names do not fit the model's text
context (the embedded model's is 16 tokens), the run uses the shortest setting
the paper reports, M = 4 initialised from "a photo of a" (the paper's
hand-crafted prompt; its 4-token variant), and the cell's notes say so.

Deviation card: `CoOp.deviations` below; `clipbench show method coop`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.augment import AUGMENTATION_ARITHMETIC, cached_views_deviation
from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.prompts import PromptTokens, check_text_tower, encode_with_context, fits, init_context
from clipbench.training import steps_per_epoch, train_epochs

SHORT_CONTEXT = (4, "a photo of a")  # the 4-token variant CoOp also reports


@dataclass(frozen=True)
class CoOpConfig(MethodConfig):
    n_ctx: int = option(16, "context tokens M (4 where 16 do not fit)", source="CoOp: 16")
    ctx_init: str = option("", "words to initialise the context from ('' = random)", source="CoOp: random")
    lr: float = option(0.002, "SGD learning rate", search=[2e-4, 6e-4, 2e-3, 6e-3, 2e-2, 6e-2], source="CoOp: 0.002")
    momentum: float = option(0.9, "SGD momentum", source="CoOp: 0.9")
    weight_decay: float = option(5e-4, "SGD weight decay", source="CoOp: 5e-4")
    batch_size: int = option(32, "images per step", source="CoOp: 32")
    epochs: int = option(200, "passes over the support set", source="CoOp: 200 for 16 shots")
    warmup_lr: float = option(1e-5, "constant learning rate of the warm-up epoch", source="CoOp: 1e-5")
    train_views: int = option(10, "cached augmented views per support image to train on (epoch e: view e mod this)",
                              source="Dassl: a fresh crop and flip every epoch; clipbench caches this many",
                              low=1, high=64)


def context_setting(model, task, config) -> tuple[int, str, dict]:
    """(M, initialisation, notes): the configured context, or the paper's 4-token one where it does not fit."""
    if fits(model, task.classnames, config.n_ctx):
        return config.n_ctx, config.ctx_init, {}
    n_ctx, init = SHORT_CONTEXT
    note = {"context": f"{config.n_ctx} context tokens do not fit the text context of {model.name}; "
                       f"used {n_ctx}, initialised from {init!r} (CoOp's 4-token setting)"}
    return n_ctx, init, note


def warmup_then_cosine(opt: torch.optim.Optimizer, per_epoch: int, epochs: int, lr: float, warmup_lr: float):
    """Dassl's schedule: one epoch (``per_epoch`` steps) at a constant ``warmup_lr``, then cosine from ``lr`` to 0."""
    warm = per_epoch
    total = max(per_epoch * epochs - warm, 1)

    def factor(step: int) -> float:
        if step < warm:
            return warmup_lr / lr
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class PromptHead(Adapted):
    """CLIP whose class embeddings, on every label space, are the class names behind the learned context.

    As in CoOp's own cross-dataset and base-to-new evaluation (the prompt learner rebuilds its prompts
    from whatever class names it is given), forgetting probes and new classes are scored through the
    learned context, not the template ensemble.  A label space whose names do not fit the text context
    after the context tokens falls back to zero-shot, and the cell's notes say which.
    """

    def __init__(self, model, task, context, class_embeddings, notes):
        super().__init__(model, trainable=context.numel(), task=task, added=[context])
        self.context, self.class_embeddings = context, class_embeddings
        self.notes = dict(notes)

    def text_head(self, task):
        if self.is_own_task(task):
            return self.class_embeddings
        key = ("context", tuple(task.classnames))
        if key not in self._heads:
            prompts = prompt_tokens_or_none(self.model, task.classnames, self.context.shape[0])
            if prompts is None:
                self.notes.setdefault("zero-shot label spaces", []).append(task.name)
                self._heads[key] = super().text_head(task)
            else:
                self._heads[key] = encode_with_context(self.model.module, prompts, self.context)
        return self._heads[key]


def prompt_tokens_or_none(model, classnames: list[str], n_ctx: int) -> PromptTokens | None:
    """The learned-context prompts of ``classnames``, or None where the names do not fit the text context."""
    return PromptTokens(model, classnames, n_ctx) if fits(model, classnames, n_ctx) else None


class CoOp(Method):
    name = "coop"
    citation = "Zhou, Yang, Loy, Liu, Learning to Prompt for Vision-Language Models (CoOp), IJCV 2022"
    summary = "learned context vectors before the class names (generic, 16 or 4 tokens); towers frozen"
    config_class = CoOpConfig
    reference = ("KaiyangZhou/CoOp: trainers/coop.py, configs/trainers/CoOp/vit_b16.yaml, train.py (TRAINER.COOP "
                 "defaults), scripts/coop/main.sh, run under Dassl")
    deviations = (
        cached_views_deviation("random resized crop (Dassl's area 0.08-1) + horizontal flip of every training "
                               "image, every epoch (INPUT.TRANSFORMS)"),
        AUGMENTATION_ARITHMETIC,
        Deviation("context length",
                  "M = 16 context vectors, random N(0, 0.02)",
                  "M = 16 where they fit; where not, M = 4 initialised from \"a photo of a\" (the cell's notes say so)",
                  True, "the embedded model's text context is 16 tokens, so 16 context tokens and a class name "
                        "cannot fit; the 4-token \"a photo of a\" is CoOp's own short setting"),
        Deviation("precision",
                  "fp16 (TRAINER.COOP.PREC: CLIP's weights and the context in half precision)",
                  "fp32",
                  True, "one precision for every method; fp16 rounding changes every update"),
        Deviation("schedule",
                  "one warm-up epoch at 1e-5, then cosine stepped once per epoch with T_max = all epochs",
                  "one warm-up epoch at 1e-5, then cosine stepped every batch over the remaining epochs, down to 0",
                  True, "a per-step curve; the two stay within about one epoch of each other"),
        Deviation("batching",
                  "Dassl drops the last partial batch of every epoch",
                  "keeps it",
                  True, "every support example is seen every epoch (16 shots x an odd class count leave a partial "
                        "batch of 32)"),
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
        n_ctx, init, notes = context_setting(model, task, config)
        prompts = PromptTokens(model, task.classnames, n_ctx)
        context = init_context(model, n_ctx, init, ctx.generator).requires_grad_(True)
        feats = fewshot.views(model, config.train_views, "train")  # the image tower is frozen: cached views
        labels = fewshot.labels.to(feats.device)
        opt = torch.optim.SGD([context], lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        sched = warmup_then_cosine(opt, steps_per_epoch(len(labels), config.batch_size), config.epochs, config.lr,
                                   config.warmup_lr)
        scale = model.logit_scale.detach()

        def loss(view, idx):
            text = encode_with_context(module, prompts, context)
            return F.cross_entropy(scale * feats[view, idx] @ text.T, labels[idx])

        train_epochs(opt, len(labels), config.batch_size, config.epochs, ctx, loss, scheduler=sched,
                     device=feats.device, views=config.train_views)
        context = context.detach()
        with torch.no_grad():
            class_embeddings = encode_with_context(module, prompts, context)
        return PromptHead(model, task, context, class_embeddings, notes)


@hookimpl
def clipbench_register_methods(register):
    register(CoOp())
