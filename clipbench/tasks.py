"""Tasks, suites and k-shot sampling.

A :class:`Task` is a label space (class names + prompt templates) with a train
pool, an ID test set, named shifts (same labels, other distribution) and the
names of forgetting probes (other tasks of the suite whose zero-shot accuracy
must survive).  Image sets are loaded lazily so that building a suite is free.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from functools import cached_property
from typing import Callable, Iterator

import numpy as np
import torch

from clipbench.errors import ClipbenchError


class ImageSet(abc.ABC):
    """A labelled image set.  Subclasses hold images in memory or read them from disk."""

    fingerprint: str
    labels: torch.Tensor  # int64 (N,), known without decoding images (sampling needs it)
    # The classes a set covers when it covers only some of its task's (ImageNet-A and -R: 200 of
    # 1000); predictions are then restricted to these classes, as the literature scores them.
    classes: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @abc.abstractmethod
    def load(self, indices: torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` as a uint8 (n, 3, H, W) tensor."""

    def load_batches(self, rows: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Images at ``rows`` in batches (sets read from disk decode them in worker processes)."""
        for start in range(0, len(rows), batch_size):
            yield self.load(rows[start:start + batch_size])

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0
        for images in self.load_batches(torch.arange(len(self)), batch_size):
            yield images, self.labels[start:start + len(images)]
            start += len(images)

    def subset(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> "ImageSet":
        return SubsetImageSet(self, indices, labels)


class TensorImageSet(ImageSet):
    """Images held in memory as one uint8 tensor (the synthetic world, miniature test sets)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, fingerprint: str | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorImageSet wants uint8 images shaped (N, 3, H, W)")
        self.images = images
        self.labels = labels.long()
        self.fingerprint = fingerprint or _hash_tensors(images, self.labels)

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices]


class SubsetImageSet(ImageSet):
    """A view of some rows of another set, optionally relabelled (for base/new class splits)."""

    def __init__(self, parent: ImageSet, indices: torch.Tensor, labels: torch.Tensor | None = None):
        self.parent = parent
        self.indices = indices.long()
        self.labels = parent.labels[self.indices] if labels is None else labels.long()
        self.classes = parent.classes if labels is None else None
        self.fingerprint = hashlib.sha256(
            (parent.fingerprint + _hash_tensors(self.indices, self.labels)).encode()).hexdigest()[:16]

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.parent.load(self.indices[indices])

    def load_batches(self, rows: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        return self.parent.load_batches(self.indices[rows], batch_size)


def _hash_tensors(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Lazy:
    """An image set built on first use and kept (datasets are expensive, suites are not)."""

    def __init__(self, build: Callable[[], ImageSet], describe: str = ""):
        self._build = build
        self.describe = describe

    @cached_property
    def value(self) -> ImageSet:
        return self._build()


@dataclass
class DataRoot:
    """Where a suite's real datasets are, filled in by the run (``--data``, ``--download``, the model's input size).

    Suites on real data hold one and read it only when a task is first used, so
    building and listing suites never touches the disk.
    """

    path: Path | None = None
    download: bool = False
    image_size: int = 224

    def require(self, dataset: str) -> Path:
        if self.path is None:
            raise ClipbenchError(f"{dataset} is a real dataset: pass --data ROOT, the folder that holds your "
                                 "datasets (layouts in the README), or set CLIPBENCH_DATA_DIR.")
        return Path(self.path)


def default_data_dir() -> Path | None:
    return Path(os.environ["CLIPBENCH_DATA_DIR"]) if os.environ.get("CLIPBENCH_DATA_DIR") else None


@dataclass
class Task:
    """A label space with its data.  ``class_split`` turns on base-to-new evaluation.

    Tasks on real data may leave ``classnames`` empty and give ``classnames_from``,
    which reads them from the dataset's own files when the task is first used.
    """

    name: str
    classnames: list[str]
    templates: list[str]
    train: Lazy
    test: Lazy
    shifts: dict[str, Lazy] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)
    class_split: bool = False
    description: str = ""
    classnames_from: Callable[[], list[str]] | None = None
    # The one prompt per class that methods train against (CoOp, CoCoOp, CLIP-Adapter and the A-CLIP
    # authors' code all use "a photo of a {}."); ``templates`` is the zero-shot evaluation ensemble.
    train_template: str = "a photo of a {}."
    # How ``class_split`` divides the classes: "first-half" (CoCoOp's: sorted labels, the first ceil(n/2)
    # are base) or "balanced" (labels 0, 3, 4, 7, 8, ... base, i.e. label mod 4 in {0, 3}: each half holds
    # about as many even labels as odd ones, whatever a dataset's label parity stands for).
    split_rule: str = "first-half"

    def __post_init__(self):
        # A task owns its lists: suites build tasks from module-level tables, and a method (or test) that
        # edits one task in place must never reach the table, nor every suite built from it afterwards.
        self.classnames, self.templates, self.probes = list(self.classnames), list(self.templates), list(self.probes)
        self.shifts = dict(self.shifts)

    def resolve(self) -> "Task":
        """Read the class names of a real-data task (once); a no-op for tasks that carry them."""
        if not self.classnames and self.classnames_from is not None:
            self.classnames = list(self.classnames_from())
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def prompts(self, classname: str) -> list[str]:
        return [t.format(classname) for t in self.templates]

    def train_prompts(self) -> list[str]:
        """One prompt per class, ``train_template`` filled in: what training losses score against."""
        return [self.train_template.format(c) for c in self.classnames]

    def base_new_split(self) -> tuple[list[int], list[int]]:
        """(base, new) labels: ceil(n/2) base classes, by ``split_rule`` (CoCoOp's first half by default)."""
        if self.split_rule == "balanced":
            base = [c for c in range(self.num_classes) if c % 4 in (0, 3)]
            return base, [c for c in range(self.num_classes) if c % 4 in (1, 2)]
        if self.split_rule != "first-half":
            raise ValueError(f"unknown split rule {self.split_rule!r}; 'first-half' or 'balanced'")
        n_base = math.ceil(self.num_classes / 2)
        return list(range(n_base)), list(range(n_base, self.num_classes))

    def restrict(self, classes: list[int], suffix: str) -> "Task":
        """The same task on a subset of its classes, labels renumbered 0..len(classes)-1."""
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))

        def view(lazy: Lazy) -> Lazy:
            def build():
                full = lazy.value
                keep = torch.nonzero(remap[full.labels] >= 0).flatten()
                return full.subset(keep, remap[full.labels[keep]])
            return Lazy(build, lazy.describe)

        return Task(f"{self.name}[{suffix}]", [self.classnames[c] for c in classes], self.templates,
                    view(self.train), view(self.test), {k: view(v) for k, v in self.shifts.items()},
                    self.probes, False, self.description, train_template=self.train_template,
                    split_rule=self.split_rule)


@dataclass
class Suite:
    """A list of tasks to adapt on, plus probe-only tasks their forgetting is measured on."""

    name: str
    tasks: dict[str, Task]
    adapt_on: list[str]
    description: str = ""
    default_model: str = "clipbench-tiny"
    default_pretrained: str | None = None
    data: DataRoot | None = None  # suites on datasets under --data hold one (see DataRoot and bind)
    # What `clipbench data check` checks: objects with a ``title`` and ``check(root, decode) -> status``
    # (status: ``dataset``, ``path``, ``state`` present/missing/corrupt, ``classes``, ``counts``, ``problems``),
    # as clipbench.data.real.Dataset; a plugin suite declares its own here.
    datasets: list = field(default_factory=list)
    # The board's protocol: every leaderboard row of this suite is scored on these evaluation seeds (a row
    # may lack some, never add others) with this many shots per class.
    evaluation_seeds: tuple[int, ...] = (1, 2, 3)
    board_shots: int = 16

    def bind(self, path: Path | None, download: bool = False, image_size: int = 224) -> "Suite":
        """Point the suite at its data: the one call a run makes (after the model loads, whose input size
        images are decoded to) before any task reads a file.  A suite without data is unchanged."""
        if self.data is not None:
            self.data.path, self.data.download, self.data.image_size = path, download, image_size
        return self

    def with_probes(self, names: list[str]) -> "Suite":
        """The suite with every task's probes cut to ``names`` (a forgetting suite run with the probe
        datasets that are present); each name must be a probe of some task."""
        known = {p for t in self.tasks.values() for p in t.probes}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ClipbenchError(f"--probes names {unknown[0]!r}, which is no probe of suite {self.name!r} "
                                 f"(its probes: {', '.join(sorted(known)) or 'none'}).")
        tasks = {k: dataclasses.replace(t, probes=[p for p in t.probes if p in names]) for k, t in self.tasks.items()}
        return dataclasses.replace(self, tasks=tasks)

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise ClipbenchError(f"Unknown task {name!r} in suite {self.name!r}. "
                                 f"Known tasks: {', '.join(self.tasks)}.")
        return self.tasks[name]

    def selected(self, names: list[str] | None) -> list[Task]:
        if not names:
            return [self.tasks[n] for n in self.adapt_on]
        return [self.task(n) for n in names]


class FewShot:
    """The k-shot support set and the validation split a method may use for its choices.

    Images are read from the pool on first use, so a method that needs only
    their embeddings (see :meth:`features`) never decodes or renders them.
    """

    def __init__(self, pool: ImageSet, indices: torch.Tensor, val_indices: torch.Tensor, shots: int, seed: int,
                 features_from: Callable[[object, str], torch.Tensor | None] | None = None,
                 views_from: Callable[..., torch.Tensor | None] | None = None):
        self.pool, self.shots, self.seed = pool, shots, seed
        self.indices, self.val_indices = indices, val_indices  # rows of the train pool, recorded for provenance
        self.labels, self.val_labels = pool.labels[indices], pool.labels[val_indices]
        # Set by the harness: pretrained-encoder embeddings of the support or validation images (by split
        # name), from the embedding cache, or None when the model's image encoder is not the pretrained one.
        self.features_from = features_from
        # Set by the harness: pretrained-encoder embeddings of augmented views of the support images
        # (model, views, purpose, scale), cached; None when the model's image encoder is not the pretrained one.
        self.views_from = views_from

    @cached_property
    def images(self) -> torch.Tensor:  # uint8 (k*C, 3, H, W)
        return self.pool.load(self.indices)

    @cached_property
    def val_images(self) -> torch.Tensor:
        return self.pool.load(self.val_indices)

    def features(self, model, split: str = "support", raw: bool = False) -> torch.Tensor:
        """L2-normalised image embeddings of the support (or ``"val"``) images under ``model`` (``raw``: the
        image tower's unnormalised output, for a head fit on raw features).

        Taken from the embedding cache when ``model``'s image encoder is bit-identical
        to the pretrained one (checked from its weights); encoded otherwise.
        """
        if split not in ("support", "val"):
            raise ValueError(f"split must be 'support' or 'val', not {split!r}")
        if self.features_from is not None:
            cached = self.features_from(model, split, raw)
            if cached is not None:
                return cached.to(model.device)
        images = self.images if split == "support" else self.val_images
        with torch.no_grad():
            return torch.cat([model.encode_image(images[i:i + 512], normalize=not raw)
                              for i in range(0, len(images), 512)])

    def views(self, model, views: int, purpose: str, scale: tuple[float, float] = (0.5, 1.0),
              raw: bool = False) -> torch.Tensor:
        """L2-normalised embeddings under ``model`` of ``views`` augmented views of every support image, as
        (views, k*C, D): random resized crops covering ``scale`` of the area, flipped half the time, drawn
        from this sample's seed and ``purpose`` (so "keys" and "train" are independent draws, the same in
        every run; ``raw``: the tower's unnormalised output).  Cached like :meth:`features` when ``model``'s
        image encoder is the pretrained one."""
        from clipbench.augment import encode_views, view_plan

        plan = view_plan(self.seed, views, purpose, scale)
        if self.views_from is not None:
            cached = self.views_from(model, views, purpose, scale, raw)
            if cached is not None:
                return cached.to(model.device)
        return encode_views(lambda x: model.encode_image(x, normalize=not raw), self.images, plan)


def sample_fewshot(pool: ImageSet, num_classes: int, shots: int, seed: int, task_name: str = "") -> FewShot:
    """k examples per class for support and min(k, 4) more per class for validation (CoOp).

    Sampling depends only on (pool labels, shots, seed), so every method sees the
    same support set for the same seed.
    """
    check_pool(pool, num_classes, shots, task_name)
    n_val = min(shots, 4)
    labels = pool.labels.numpy()
    rng = np.random.default_rng(seed)
    support, val = [], []
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        picked = rng.permutation(rows)[: shots + n_val]
        support.extend(picked[:shots].tolist())
        val.extend(picked[shots:].tolist())
    return FewShot(pool, torch.tensor(sorted(support)), torch.tensor(sorted(val)), shots, seed)


def check_pool(pool: ImageSet, num_classes: int, shots: int, task_name: str = "") -> None:
    """One clear error when some class has fewer than k + min(k, 4) training images."""
    if shots < 1:
        raise ClipbenchError(f"--shots must be at least 1, got {shots}.")
    need = shots + min(shots, 4)
    counts = torch.bincount(pool.labels, minlength=num_classes)
    smallest = int(counts.min())
    if smallest < need:
        raise ClipbenchError(
            f"Task {task_name!r} has only {smallest} training images in its smallest class (class "
            f"{int(counts.argmin())}); {shots} shots plus {min(shots, 4)} validation images need {need}. "
            f"Use --shots {smallest - 4 if smallest >= 8 else smallest // 2} or fewer.")
