"""The standard protocol: sample k shots -> adapt -> evaluate ID, shifts, probes -> record cost.

One (method, task, seed) is a *cell*.  The protocol never selects anything on
test data: methods get a support set and a disjoint validation split drawn
from the train pool (CoOp), and every test set is only ever scored.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from clipbench import metrics, scoring
from clipbench.cache import EmbeddingCache
from clipbench.errors import ClipbenchError
from clipbench.method import AdaptContext, Adapted, Method
from clipbench.models import ClipModel, state_fingerprint
from clipbench.tasks import ImageSet, Suite, Task, check_pool, sample_fewshot


class Reporter(Protocol):
    """Where the protocol reports progress (the CLI draws rich bars; tests pass a silent one)."""

    def stage(self, description: str, total: int) -> Callable[[int, int], None]: ...

    def cell_finished(self, done: int, total: int, method: str, cell: dict) -> None: ...


def tell(reporter, event: str, *args) -> None:
    """An optional reporter event (the plan, the zero-shot reference, a cell starting; see
    :mod:`clipbench.outline`): reporters that do not listen for it (the silent one, a cluster worker's) are
    not asked."""
    listener = getattr(reporter, event, None)
    if listener is not None:
        listener(*args)


class SilentReporter:
    def stage(self, description: str, total: int) -> Callable[[int, int], None]:
        return lambda done, total: None

    def cell_finished(self, done: int, total: int, method: str, cell: dict) -> None:
        pass


@dataclass
class Evaluator:
    """Scores models on image sets in large batches under inference mode.

    The pretrained model's scores (the zero-shot reference every gain and every
    forgetting number is measured against) are memoised per image set.  With a
    ``cache`` and a bound pretrained model, an adapted model whose image encoder
    is bit-identical to the pretrained one (decided from its weights, not from a
    flag a method could get wrong) is scored from cached embeddings: its images
    are never encoded again, in this run or the next.
    """

    batch_size: int | None = None  # None: default_batch_size of the bound model's device
    reporter: Reporter = field(default_factory=SilentReporter)
    cache: EmbeddingCache | None = None
    precision: str = "fp32"  # or "bf16": autocast for evaluation only, training stays fp32
    _reference: dict[tuple, float] = field(default_factory=dict)
    images_scored: int = 0
    seconds: float = 0.0
    _pretrained: ClipModel | None = None
    _visual_fp: str | None = None
    _encoder_checked: tuple | None = None  # (weak reference to the last adapted model, its encoder is pretrained)

    def bind(self, pretrained: ClipModel) -> None:
        """The pretrained model whose image embeddings may be cached and reused."""
        self._pretrained = pretrained
        if self.batch_size is None:
            self.batch_size = default_batch_size(pretrained.device)
        self._visual_fp = image_encoder_fingerprint(pretrained)

    @property
    def visual_fingerprint(self) -> str | None:
        """The bound pretrained image tower's fingerprint (computed once, at :meth:`bind`)."""
        return self._visual_fp

    def encoder_is_pretrained(self, adapted: Adapted) -> bool:
        """Whether cached pretrained embeddings are the adapted model's own: the image tower's weights are the
        pretrained ones *and* a fixed canary batch encodes bit for bit as the pretrained model encodes it (a
        visual prompt added by a forward pre-hook, an input transform, leaves the weights alone)."""
        if self.cache is None or self._visual_fp is None:
            return False
        # decided once per adapted model (the evaluator keeps the answer, never writes onto the method's object)
        known = self._encoder_checked
        if known is None or known[0]() is not adapted:
            self._encoder_checked = known = (weakref.ref(adapted), self._serves_pretrained(adapted.model))
        return known[1]

    CANARY_IMAGES = 4

    @torch.inference_mode()
    def _canary_agrees(self, model: ClipModel) -> bool:
        """A fixed batch of images (seeded noise) through ``model``'s image path and the pretrained one's:
        bit-equal embeddings, or the cache must not stand in for ``model``."""
        size = self._pretrained.image_size
        canary = torch.randint(0, 256, (self.CANARY_IMAGES, 3, size, size), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(20260101))
        return torch.equal(model.encode_image(canary.to(model.device)).float().cpu(),
                           self._pretrained.encode_image(canary.to(self._pretrained.device)).float().cpu())

    def _serves_pretrained(self, model: ClipModel) -> bool:
        """Whether cached pretrained embeddings may stand in for ``model``'s image path: there is a cache, and
        ``model``'s image tower has the pretrained weights and encodes the canary batch bit for bit alike."""
        return self.cache is not None and self._visual_fp is not None \
            and image_encoder_fingerprint(model) == self._visual_fp and self._canary_agrees(model)

    def pretrained_features(self, model: ClipModel, images: ImageSet, raw: bool = False) -> torch.Tensor | None:
        """fp32 embeddings of ``images`` for a method's training, when ``model`` still has the pretrained
        image encoder (checked from its weights and a canary batch) and there is a cache; else None (the
        method encodes)."""
        if not self._serves_pretrained(model):
            return None
        return self.features(images, "support", precision="fp32", raw=raw).clone()

    def pretrained_views(self, model: ClipModel, images: ImageSet, plan, raw: bool = False) -> torch.Tensor | None:
        """fp32 embeddings (views, N, D) of a :class:`clipbench.augment.ViewPlan`'s augmented views of
        ``images``, under the same conditions as :meth:`pretrained_features`; cached under the plan's key."""
        from clipbench.augment import ViewPlan, encode_views

        if not self._serves_pretrained(model):
            return None

        if type(plan) is not ViewPlan:  # only the harness's own plans name cache entries
            raise TypeError(f"a view plan must be a clipbench.augment.ViewPlan, not {type(plan).__name__}")

        def encode():
            pixels = images.load(torch.arange(len(images)))
            with torch.inference_mode():
                return encode_views(lambda x: self._pretrained.encode_image(x, normalize=not raw), pixels, plan,
                                    self.batch_size).cpu()

        flat = self.cache.get_or_compute(self._visual_fp, images.fingerprint,
                                         f"{plan.key()}{'-raw' if raw else ''}-fp32",
                                         lambda: encode().flatten(0, 1), rows=plan.views * len(images))
        return flat.view(plan.views, len(images), -1).clone()

    @torch.inference_mode()
    def features(self, images: ImageSet, label: str = "", precision: str | None = None,
                 raw: bool = False) -> torch.Tensor:
        """Pretrained image embeddings of a whole set (``raw``: the tower's unnormalised output), from the cache
        or encoded once into it."""
        precision = precision or self.precision

        def encode():
            tick = self.reporter.stage(f"encode {label}", len(images))
            out, done = [], 0
            for batch, _ in images.batches(self.batch_size):
                out.append(self._pretrained.encode_image(batch, normalize=not raw).float().cpu())
                done += len(batch)
                tick(done, len(images))
            return torch.cat(out)

        return self.cache.get_or_compute(self._visual_fp, images.fingerprint,
                                         f"features-{'raw-' if raw else ''}{precision}",
                                         lambda: self._autocast(encode, precision), rows=len(images))

    def _autocast(self, fn, precision: str | None = None):
        if (precision or self.precision) == "fp32":
            return fn()
        device = self._pretrained.device.type if self._pretrained is not None else "cpu"
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return fn()

    def accuracy(self, adapted: Adapted, images: ImageSet, task: Task, label: str = "") -> float:
        return metrics.accuracy_of(self.correct(adapted, images, task, label))

    def score(self, adapted: Adapted, images: ImageSet, task: Task, label: str = "") -> tuple[float, dict]:
        """Accuracy on a set and which of its images were right (packed, for the bootstrap and checks)."""
        correct = self.correct(adapted, images, task, label)
        return metrics.accuracy_of(correct), scoring.pack_correct(correct.tolist())

    def correct(self, adapted: Adapted, images: ImageSet, task: Task, label: str = "") -> torch.Tensor:
        """Per image of ``images``, whether ``adapted`` classifies it correctly (bool tensor)."""
        return self._autocast(lambda: self._correct(adapted, images, task, label))

    @torch.inference_mode()
    def _correct(self, adapted: Adapted, images: ImageSet, task: Task, label: str = "") -> torch.Tensor:
        """One scoring path: encoder embeddings (cached when the image tower is the pretrained one,
        encoded otherwise) -> ``adapted.logits_from_features`` -> prediction."""
        start = time.perf_counter()
        if self.batch_size is None:  # never bound: scored without a cache
            self.batch_size = default_batch_size(adapted.model.device)
        preds = []
        raw = bool(adapted.raw_features)
        if self.encoder_is_pretrained(adapted):
            feats = self.features(images, label, raw=raw).to(adapted.model.device)
            for i in range(0, len(feats), self.batch_size):
                logits = adapted.logits_from_features(feats[i:i + self.batch_size], task)
                preds.append(predict(logits, images.classes))
        else:
            tick = self.reporter.stage(f"eval {label}", len(images))
            for batch, _ in images.batches(self.batch_size):
                feats = adapted.model.encode_image(batch, normalize=not raw)
                preds.append(predict(adapted.logits_from_features(feats, task), images.classes))
                tick(sum(len(p) for p in preds), len(images))
        self.images_scored += len(images)
        self.seconds += time.perf_counter() - start
        return metrics.correct(torch.cat(preds), images.labels)

    def reference(self, pretrained: Adapted, fingerprint: str, images: ImageSet, task: Task,
                  label: str) -> tuple[float, dict]:
        """The pretrained model's (accuracy, packed correctness) on a set, computed once per set."""
        key = (fingerprint, images.fingerprint, task.name, tuple(task.classnames), tuple(task.templates))
        if key not in self._reference:
            self._reference[key] = self.score(pretrained, images, task, f"zero-shot {label}")
        return self._reference[key]


CPU_EVAL_BATCH, GPU_EVAL_BATCH = 128, 512


def default_batch_size(device: torch.device) -> int:
    """The evaluation batch: on the CPU, 128 images keep a batch's activations in the caches (the embedded
    model encodes 1.5x faster than at 512, measured here, and bit for bit the same: no image's numbers
    depend on its batch); a GPU wants large batches."""
    return CPU_EVAL_BATCH if torch.device(device).type == "cpu" else GPU_EVAL_BATCH


def predict(logits: torch.Tensor, classes: list[int] | None) -> torch.Tensor:
    """Predicted labels; with ``classes``, the best of those classes only (ImageNet-A/-R's 200 of 1000)."""
    if classes is None:
        return logits.argmax(dim=-1).cpu()
    keep = torch.as_tensor(classes, device=logits.device)
    return keep[logits.index_select(-1, keep).argmax(dim=-1)].cpu()


def image_encoder_fingerprint(model: ClipModel) -> str:
    """Identity of what turns an image into an embedding: the image tower's weights and preprocessing."""
    visual = model.module.visual.state_dict()
    visual["__preprocess__"] = torch.tensor([model.image_size, *model.mean, *model.std], dtype=torch.float64)
    return state_fingerprint(visual)


def task_views(task: Task) -> tuple[Task, Task | None]:
    """The task a method adapts on and, for base-to-new tasks, the held-out new-class task."""
    if not task.class_split:
        return task, None
    base, new = task.base_new_split()
    return task.restrict(base, "base"), task.restrict(new, "new")


def sample_fewshot_check(task: Task, shots: int) -> None:
    train_task, _ = task_views(task)
    check_pool(train_task.train.value, train_task.num_classes, shots, task.name)


def zeroshot_reference(model: ClipModel, suite: Suite, task: Task, evaluator: Evaluator,
                       fingerprint: str | None = None) -> dict:
    """Pretrained-model accuracies (and per-image correctness) on everything a cell of ``task`` is scored on
    (``fingerprint``: the model's, when the caller has computed it)."""
    pretrained = Adapted(model)
    fp = fingerprint or model.fingerprint()
    train_task, new_task = task_views(task)
    scored = {
        "id": evaluator.reference(pretrained, fp, train_task.test.value, train_task, f"{task.name}"),
        "shifts": {s: evaluator.reference(pretrained, fp, lazy.value, train_task, f"{task.name}/{s}")
                   for s, lazy in train_task.shifts.items()},
        "probes": {p: evaluator.reference(pretrained, fp, suite.task(p).test.value, suite.task(p), f"probe {p}")
                   for p in task.probes},
    }
    if new_task is not None:
        scored["new"] = evaluator.reference(pretrained, fp, new_task.test.value, new_task, f"{task.name}/new")
    ref = split_scores(scored)
    ref["chance"] = {
        "id": set_chance(train_task.test.value, train_task),
        "shifts": {s: set_chance(lazy.value, train_task) for s, lazy in train_task.shifts.items()},
        "probes": {p: set_chance(suite.task(p).test.value, suite.task(p)) for p in task.probes},
    }
    if new_task is not None:
        ref["chance"]["new"] = set_chance(new_task.test.value, new_task)
    return ref


def split_scores(scored: dict) -> dict:
    """{"id": (acc, packed), "shifts": {...}, ...} -> the record's accuracies plus its ``correct`` sets."""
    out, correct = {}, {}
    for key, value in scored.items():
        if isinstance(value, dict):
            out[key] = {k: v[0] for k, v in value.items()}
            correct[key] = {k: v[1] for k, v in value.items()}
        else:
            out[key], correct[key] = value
    out["correct"] = correct
    return out


def set_chance(images: ImageSet, task: Task) -> float:
    """Chance accuracy on a set: uniform guessing among the classes it is scored on."""
    return scoring.chance(len(images.classes) if images.classes is not None else task.num_classes)


def run_cell(method: Method, config, model: ClipModel, suite: Suite, task: Task, seed: int, shots: int,
             evaluator: Evaluator, device: torch.device, reporter: Reporter,
             on_epoch: Callable[[int, int, float], None] | None = None, shared_fp: str | None = None) -> dict:
    """Adapt on one k-shot sample and score the adapted model everywhere (``on_epoch``: training losses;
    ``shared_fp``: the shared model's fingerprint, when the caller knows it: hashing 31 MB of weights twice
    was a tenth of a frozen-encoder cell's harness).

    A method is not trusted: it gets copies of the tasks and no handle to the shared pretrained
    model, torch's global state is put back after the cell, what it returns is checked (logits of
    shape (N, C) and finite, a plausible ``trainable``), and anything it raises or breaks becomes one
    :class:`MethodError` sentence naming the method and the cell; a failed cell is never recorded.
    """
    where = f"on task {task.name!r}, seed {seed}"
    state = TorchState.capture()
    shared_fp = shared_fp or model.fingerprint()
    try:
        cell = _run_cell(method, config, model, suite, task, seed, shots, evaluator, device, reporter, on_epoch,
                         where)
        if model.fingerprint() != shared_fp:
            raise MethodError(f"Method {method.name!r} changed the shared pretrained model {where}; a method "
                              "may change only the copy it is given, so the cell is not recorded.")
        return cell
    except ClipbenchError:
        raise
    except Exception as exc:
        raise MethodError(f"Method {method.name!r} failed {where}: {last_line(exc)} (the cell is not recorded; "
                          "cells finished before it are kept).") from exc
    finally:
        state.restore()


def _run_cell(method, config, model, suite, task, seed, shots, evaluator, device, reporter, on_epoch, where):
    train_task, new_task = task_views(task)
    fewshot = sample_fewshot(train_task.train.value, train_task.num_classes, shots, seed, task.name)
    attach_sources(fewshot, evaluator)
    torch.manual_seed(seed)
    ctx = AdaptContext(device=device, seed=seed, progress=reporter.stage(f"adapt {method.name} on {task.name}", 1))
    if on_epoch is not None:
        ctx.epoch_finished = on_epoch
    working = model.clone()
    total_params = working.num_parameters()
    cache = evaluator.cache
    before = (cache.hits, cache.misses) if cache is not None and cache.enabled else None
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        adapted = method.adapt(working, fewshot, sealed(train_task, f"Method {method.name!r}",
                                                        "a method adapts on its support set only"), config, ctx)
        adapt_seconds = time.perf_counter() - start
    adapt_cache = cache_state(before, cache)  # of the adaptation alone, before evaluation reads the cache
    ctx.progress(1, 1)  # the adapt bar is finished even if the method never reported progress
    if not isinstance(adapted, Adapted):
        raise MethodError(f"Method {method.name!r} returned {type(adapted).__name__}, not an Adapted model, {where}.")
    trainable = check_trainable(adapted, total_params, f"Method {method.name!r} {where}")
    check_logits_of(adapted, f"Method {method.name!r} {where}")
    if hasattr(adapted.model.module, "eval"):
        adapted.model.module.eval()
    scored_before, seconds_before = evaluator.images_scored, evaluator.seconds
    scored = {
        "id": evaluator.score(adapted, train_task.test.value, copy_task(train_task), task.name),
        "shifts": {s: evaluator.score(adapted, lazy.value, copy_task(train_task), f"{task.name}/{s}")
                   for s, lazy in train_task.shifts.items()},
        "probes": {p: evaluator.score(adapted, suite.task(p).test.value, copy_task(suite.task(p)), f"probe {p}")
                   for p in task.probes},
    }
    if new_task is not None:
        scored["new"] = evaluator.score(adapted, new_task.test.value, copy_task(new_task), f"{task.name}/new")
    cell = {"task": task.name, "seed": seed, "shots": shots, **split_scores(scored)}
    eval_images = evaluator.images_scored - scored_before
    eval_seconds = evaluator.seconds - seconds_before
    cell["cost"] = {
        "trainable_params": trainable,
        "trainable_pct": 100.0 * trainable / total_params,
        "adapt_seconds": round(adapt_seconds, 3),
        "peak_memory_mb": round(mem.peak_mb, 1),
        "eval_images_per_second": round(eval_images / eval_seconds, 1) if eval_seconds > 0 else None,
        # whether adapt_seconds include encoding the support set: its embeddings came from a warm cache,
        # were encoded into a cold one, the method encodes images itself (unused), or there is no cache
        "cache": adapt_cache,
    }
    cell["support_fingerprint"] = train_task.train.value.subset(fewshot.indices).fingerprint
    if adapted.notes:
        cell["notes"] = dict(adapted.notes)
    return cell


class MethodError(ClipbenchError):
    """A method broke the contract or raised: one sentence naming the method and the cell."""

    debug_hint = True


def last_line(exc: BaseException) -> str:
    """An exception's last line as Python prints it ("ValueError: bad lr")."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def copy_task(task: Task) -> Task:
    """A copy of ``task`` a method may change without reaching anyone else's (same names, same order)."""
    return dataclasses.replace(task, classnames=list(task.classnames), templates=list(task.templates),
                               shifts=dict(task.shifts), probes=list(task.probes))


def sealed(task: Task, doing: str, allowed: str) -> Task:
    """A copy of ``task`` whose test and shift sets raise one sentence if touched (``doing`` names who did,
    ``allowed`` what it may use instead): what a method adapts on, and what tuning sees."""
    from clipbench.tasks import Lazy

    def forbidden(what: str) -> Lazy:
        def touch():
            raise ClipbenchError(f"{doing} touched the {what} of task {task.name!r}: {allowed}.")
        return Lazy(touch, f"forbidden: {what}")

    copy = copy_task(task)
    return dataclasses.replace(copy, test=forbidden("test set"),
                               shifts={s: forbidden(f"shift {s}") for s in task.shifts})


def attach_sources(fewshot, evaluator: Evaluator) -> None:
    """Let a cell's few-shot sample ask the harness for cached pretrained embeddings of its own images.

    The support and validation subsets are taken here, before the method sees the sample, and the lookups
    take only a split name, or a view count, purpose and crop scale (the harness makes the plan and its
    cache key): whatever a method does to ``fewshot.pool`` or passes in, the harness encodes and caches
    only these images, under their own fingerprints.  The lookup is a plain function, not a
    bound method, so no attribute hands a method the evaluator (still reachable in-process through the
    closure: the shared model's fingerprint is checked after every cell and every tuning trial).
    """
    sets = {"support": fewshot.pool.subset(fewshot.indices), "val": fewshot.pool.subset(fewshot.val_indices)}
    lookup = evaluator.pretrained_features

    from clipbench.augment import view_plan

    views_lookup, seed = evaluator.pretrained_views, fewshot.seed

    def features_from(model, split: str, raw: bool = False):
        return lookup(model, sets[split], raw=raw is True)

    def views_from(model, views: int, purpose: str, scale=(0.5, 1.0), raw: bool = False):
        # the plan is made here from plain values (and the seed as sampled): a method cannot hand the harness
        # an object whose cache key names other pixels
        return views_lookup(model, sets["support"], view_plan(seed, views, purpose, scale), raw=raw is True)

    fewshot.features_from = features_from
    fewshot.views_from = views_from


def added_entries(adapted: Adapted) -> int:
    """Entries of the tensors and modules an Adapted declares in ``added`` (anything else counts nothing)."""
    total = 0
    for item in adapted.added:
        if isinstance(item, torch.nn.Module):
            total += sum(p.numel() for p in item.parameters())
        elif isinstance(item, torch.Tensor):
            total += item.numel()
    return total


def check_trainable(adapted: Adapted, total_params: int, who: str) -> int:
    """``adapted.trainable`` as an int: a whole number from 0 to the model's size plus what was added."""
    value = adapted.trainable
    try:
        if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.is_floating_point()):
            raise TypeError
        count = operator.index(value)
    except TypeError:
        raise MethodError(f"{who} reported trainable={value!r}; it must be a whole number of parameters.") from None
    limit = max(total_params, adapted.model.num_parameters()) + added_entries(adapted)
    if not 0 <= count <= limit:
        raise MethodError(f"{who} reported trainable={count:,}; it must lie between 0 and the model's "
                          f"{limit:,} parameters plus what it declared in Adapted(added=...).")
    return count


def check_logits(logits, rows: int, task: Task, who: str) -> None:
    """Logits must be a finite (rows, classes) tensor: no broadcasting, no extra classes, no NaN/Inf."""
    if not isinstance(logits, torch.Tensor):
        raise MethodError(f"{who} returned {type(logits).__name__} as logits on {task.name!r}, not a tensor.")
    expected = (rows, task.num_classes)
    if tuple(logits.shape) != expected:
        raise MethodError(f"{who} returned logits of shape {tuple(logits.shape)} on {task.name!r}; expected "
                          f"{expected}, one row per image and one column per class.")
    if logits.is_floating_point() and not bool(torch.isfinite(logits).all()):
        raise MethodError(f"{who} returned non-finite logits (NaN or Inf) on {task.name!r}; the model may have "
                          "diverged (a learning rate too large?).")


def check_logits_of(adapted: Adapted, who: str) -> None:
    """Check every logits ``adapted`` gives while it is scored (the one path: ``logits_from_features``)."""
    inner = adapted.logits_from_features

    def logits_from_features(features, task):
        logits = inner(features, task)
        check_logits(logits, len(features), task, who)
        return logits

    adapted.logits_from_features = logits_from_features


@dataclass
class TorchState:
    """torch's process-wide settings a method could leave changed: put back after every cell."""

    grad: bool
    dtype: torch.dtype
    threads: int
    deterministic: bool
    warn_only: bool
    anomaly: bool
    matmul_precision: str
    cudnn: tuple
    autocast: tuple
    rng: torch.Tensor
    cuda_rng: list | None

    @classmethod
    def capture(cls) -> "TorchState":
        return cls(grad=torch.is_grad_enabled(), dtype=torch.get_default_dtype(), threads=torch.get_num_threads(),
                   deterministic=torch.are_deterministic_algorithms_enabled(),
                   warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
                   anomaly=torch.is_anomaly_enabled(), matmul_precision=torch.get_float32_matmul_precision(),
                   cudnn=(torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
                   autocast=(torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")),
                   rng=torch.get_rng_state(),
                   cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)

    def changed(self, other: "TorchState") -> list[str]:
        """The settings that differ in ``other`` (the random state aside: drawing from it is fair use)."""
        return [f.name for f in dataclasses.fields(self) if f.name not in ("rng", "cuda_rng")
                and getattr(self, f.name) != getattr(other, f.name)]

    def restore(self) -> None:
        torch.set_grad_enabled(self.grad)
        torch.set_default_dtype(self.dtype)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
                != (self.deterministic, self.warn_only):
            torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)
        if torch.is_anomaly_enabled() != self.anomaly:
            torch.set_anomaly_enabled(self.anomaly)
        torch.set_float32_matmul_precision(self.matmul_precision)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.cudnn
        torch.set_autocast_enabled("cpu", self.autocast[0])
        torch.set_autocast_dtype("cpu", self.autocast[1])
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


CACHE_STATES = ("warm", "cold", "unused", "off")


def cache_state(before: tuple[int, int] | None, cache) -> str:
    if before is None:
        return "off"
    hits, misses = cache.hits - before[0], cache.misses - before[1]
    return "cold" if misses else "warm" if hits else "unused"


class PeakMemory:
    """Peak memory while a block runs: CUDA's allocator peak, or the process RSS peak above the start."""

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = _rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mb = (self._peak - self._base) / 2**20
        return False


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
