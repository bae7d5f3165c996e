"""The training loop every trainer in clipbench runs, and the fine-tuning of encoder weights on it.

:func:`train_steps` is the one loop (a step per batch; progress and per-epoch losses reported), so
every method's epochs reach the trackers and a change to how a step is taken is made once.
:func:`train_epochs` feeds it shuffled minibatches, :func:`full_batch` whole-support-set steps.

:func:`finetune`'s loss is CLIP's own: cross-entropy over ``logit_scale * image . text^T``
with the class prompts encoded by the (possibly trainable) text tower: one
prompt per class during training, the task's ``train_template`` ("a photo of a {}."
unless the task says otherwise), as in CoOp and the A-CLIP/IIMM reference code.
Methods differ in *which* tensors train and how (masks, reparametrisations,
regularisers), so the loop takes the parameters and optional hooks.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F

from clipbench.config import DECAYS, Schedule
from clipbench.errors import ClipbenchError
from clipbench.method import AdaptContext
from clipbench.models import ClipModel
from clipbench.tasks import FewShot, Task


def make_optimizer(params: list[torch.nn.Parameter], s: Schedule) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        # the fused kernel: the same update in one pass over the weights (full fine-tuning of the embedded
        # model 1.3x faster here); parameters of other dtypes fall back to the default kernel
        fused = all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, fused=fused or None)
    raise ValueError(f"unknown optimizer {s.optimizer!r}")


def warmup_cosine(opt: torch.optim.Optimizer, total: int, warmup_fraction: float, decay: str = "cosine"):
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0 (or a constant rate)."""
    if decay not in DECAYS:  # an option's choices refuse a bad value before any work; this is a caller's bug
        raise ValueError(f"unknown learning-rate decay {decay!r}; one of {', '.join(DECAYS)}")
    total = max(total, 1)
    warmup = max(1, int(total * warmup_fraction))

    def after_warmup(step: int) -> float:
        return 1.0 if decay == "constant" else 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) * after_warmup(step))


def class_text_features(model: ClipModel, task: Task) -> torch.Tensor:
    """Normalised text features of the task's training prompt per class, with gradients."""
    return model.encode_text(task.train_prompts())


def clip_logits(model: ClipModel, images: torch.Tensor, task: Task) -> torch.Tensor:
    return model.logit_scale * model.encode_image(images) @ class_text_features(model, task).T


def minibatches(n: int, batch_size: int, epochs: int, generator: torch.Generator,
                device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Index batches of ``epochs`` shuffled passes over ``n`` examples (the order drawn from ``generator``)."""
    batch = min(batch_size, n)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch):
            yield order[start:start + batch]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / min(batch_size, n))


Batch = TypeVar("Batch")


def train_steps(optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                loss_fn: Callable[[Batch], torch.Tensor], total: int, *,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, per_epoch: int = 0,
                progress: Callable[[int, int], None] = lambda done, total: None,
                epoch_finished: Callable[[int, int, float], None] = lambda epoch, epochs, loss: None,
                after_backward: Callable[[], None] | None = None,
                after_step: Callable[[int, float], None] | None = None) -> list[float]:
    """One optimiser step on ``loss_fn(batch)`` per batch; returns the per-step losses.

    ``batches`` is read lazily, so random draws keep their order: a batch's draws (an epoch's shuffle),
    then the step's own (augmentation).  After each step: ``progress(step, total)``; every ``per_epoch``
    steps, ``epoch_finished(epoch, total // per_epoch, mean loss of those steps)``; then
    ``after_step(step, loss)`` (a clamp, an evaluation).  ``after_backward`` may edit gradients in place
    (masks, clipping) before the optimiser step.
    """
    losses = []
    for step, batch in enumerate(batches, start=1):
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
        progress(step, total)
        if per_epoch and step % per_epoch == 0:
            epoch_finished(step // per_epoch, total // per_epoch, sum(losses[-per_epoch:]) / per_epoch)
        if after_step is not None:
            after_step(step, losses[-1])
    optimizer.zero_grad(set_to_none=True)  # an adapted model carries no gradients into evaluation
    return losses


def train_epochs(optimizer: torch.optim.Optimizer, n: int, batch_size: int, epochs: int, ctx: AdaptContext,
                 loss_fn: Callable[..., torch.Tensor], *,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 device: torch.device | str = "cpu", after_backward: Callable[[], None] | None = None,
                 views: int = 0) -> list[float]:
    """``epochs`` shuffled passes over ``n`` examples in minibatches (:func:`minibatches`, drawn from
    ``ctx.generator``), a step on ``loss_fn(indices)`` each, reported to ``ctx``; returns the per-step losses.
    With ``views`` (cached augmented views per example, :meth:`clipbench.tasks.FewShot.views`) the step is
    ``loss_fn(view, indices)``: epoch ``e`` (counted from 0; ``epoch_finished`` reports it as ``e + 1``)
    trains on view ``e mod views``."""
    per_epoch = steps_per_epoch(n, batch_size)
    batches = minibatches(n, batch_size, epochs, ctx.generator, device)
    step_on = loss_fn
    if views:
        batches = (((step // per_epoch) % views, idx) for step, idx in enumerate(batches))
        step_on = lambda batch: loss_fn(*batch)  # noqa: E731
    return train_steps(optimizer, batches, step_on,
                       per_epoch * epochs, scheduler=scheduler, per_epoch=per_epoch, progress=ctx.progress,
                       epoch_finished=ctx.epoch_finished, after_backward=after_backward)


def full_batch(optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], steps: int,
               epoch_finished: Callable[[int, int, float], None] = lambda epoch, epochs, loss: None) -> list[float]:
    """``steps`` full-batch optimiser steps on ``loss_fn()``: the loop of the methods that train on features.
    Each step is a pass over the whole support set, so each is reported as an epoch."""
    return train_steps(optimizer, range(steps), lambda _: loss_fn(), steps, per_epoch=1,
                       epoch_finished=epoch_finished)


Choice = TypeVar("Choice")


def best_on_validation(candidates: Sequence[Choice], fit_and_score: Callable[[Choice], tuple[tuple, object]],
                       progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[Choice, object]:
    """Fit each candidate setting and keep the one whose validation score (a tuple, compared as such) is
    highest; the earlier candidate wins ties.  Returns (setting, what its fit returned)."""
    best = None
    for i, candidate in enumerate(candidates):
        score, fitted = fit_and_score(candidate)
        if best is None or score > best[0]:
            best = (score, candidate, fitted)
        progress(i + 1, len(candidates))
    return best[1], best[2]


def finetune(
    model: ClipModel,
    params: Iterable[torch.nn.Parameter],
    fewshot: FewShot,
    task: Task,
    schedule: Schedule,
    ctx: AdaptContext,
    *,
    logits_fn: Callable[[ClipModel, torch.Tensor, Task], torch.Tensor] = clip_logits,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    after_backward: Callable[[], None] | None = None,
    loss_fn: Callable[[ClipModel, torch.Tensor, torch.Tensor, Task], torch.Tensor] | None = None,
) -> list[float]:
    """Train ``params`` of ``model`` on the support set; returns the per-step losses.

    The loss is cross-entropy over ``logits_fn``'s logits unless ``loss_fn(model,
    images, labels, task)`` replaces it (e.g. a contrastive loss; FLYP runs its own row stream).
    ``extra_loss(images, labels, logits)`` adds a regulariser; ``after_backward``
    may edit gradients in place (masks) before the optimiser step.
    """
    params = [p for p in params if p.requires_grad]
    opt = make_optimizer(params, schedule)
    n = len(fewshot.labels)
    sched = warmup_cosine(opt, schedule.total_steps(n), schedule.warmup_fraction, schedule.decay)
    images, labels = fewshot.images.to(ctx.device), fewshot.labels.to(ctx.device)

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx]
        if augment is not None:
            x = augment(x, ctx.generator)
        if loss_fn is not None:
            loss, logits = loss_fn(model, x, labels[idx], task), None
        else:
            logits = logits_fn(model, x, task)
            loss = F.cross_entropy(logits, labels[idx])
        if extra_loss is not None:
            loss = loss + extra_loss(x, labels[idx], logits)
        return loss

    def edit_gradients() -> None:
        if after_backward is not None:
            after_backward()
        if schedule.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)

    model.module.train()
    losses = train_epochs(opt, n, schedule.batch_size, schedule.epochs, ctx, step_loss, scheduler=sched,
                          device=ctx.device, after_backward=edit_gradients)
    model.module.eval()
    return losses


def finetune_only(model: ClipModel, params: list[torch.nn.Parameter], fewshot: FewShot, task: Task,
                  schedule: Schedule, ctx: AdaptContext) -> int:
    """Freeze everything but ``params``, fine-tune them, freeze again; returns how many entries trained."""
    model.module.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    finetune(model, params, fewshot, task, schedule, ctx)
    model.module.requires_grad_(False)
    return count_parameters(params)


def count_parameters(params: Iterable[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
