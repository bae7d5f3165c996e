"""Built-in plugin: the embedded `default` suite, the procedural world plus real images that ship.

Five tasks, each with shifts and forgetting probes on *other* datasets, so that
forgetting means losing skill on images the fine-tuning never saw:

- ``shape`` and ``colour``: the procedural world (32x32 shapes).  The model was
  pretrained on filled shapes on plain backgrounds; the shifts are what it
  barely or never saw (outline "sketches", a cluttered background, pixel noise,
  blur; a coloured illuminant, dim light).
- ``clothing`` (Fashion-MNIST), ``digits`` (MNIST) and ``animals`` (animal
  silhouettes): real 28x28 images shipped with clipbench.  Digits shift to
  scikit-learn's 8x8 digits (other writers, another resolution: a real shift);
  every real task also shifts to thumbnails (10x10, scaled back up) and to
  partly blanked views (a 10x10 square missing, centred on the figure).

The embedded model was pretrained on the world and on the shipped images'
*pretrain* pools, disjoint (near duplicates included) from every train pool,
test set, shift and probe here.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import zlib
from functools import cached_property

import numpy as np
import torch

from clipbench.cache import rendered_images
from clipbench.data import shipped, world
from clipbench.hookspecs import hookimpl
from clipbench.tasks import ImageSet, Lazy, Suite, Task, TensorImageSet

TRAIN_PER_CLASS = 64
TEST_PER_CLASS = 100

WORLD_SHIFTS = {
    "outline": dict(outline_prob=1.0),
    "cluttered": dict(backgrounds=world.UNSEEN_BACKGROUNDS),
    "noise": dict(corruption="noise"),
    "blur": dict(corruption="blur"),
    "tint": dict(corruption="tint"),
    "dim": dict(corruption="dim"),
}

TEMPLATES = {
    "shape": ["a photo of a {}.", "a drawing of a {}.", "a {}."],
    "colour": ["a photo of a {} shape.", "a drawing of a {} object.", "a {} shape."],
    "clothing": ["a photo of a {}.", "a black and white photo of a {}.", "a product photo of a {}."],
    "digits": ["a photo of the number {}.", "the digit {}.", "a handwritten {}."],
    "animals": ["a photo of a {}.", "a silhouette of a {}.", "a black and white picture of a {}."],
}
# The one prompt per class methods train against ("a photo of a {}." unless said here).
TRAIN_TEMPLATES = {"colour": "a photo of a {} shape.", "digits": "a photo of the number {}."}

# task -> (shipped collection, shifts, probes)
REAL_TASKS = {
    "clothing": ("fashion", ["lowres", "occluded"], ["digits", "animals", "shape"]),
    "digits": ("mnist", ["uci-digits", "lowres", "occluded"], ["clothing", "animals", "shape"]),
    "animals": ("animals", ["lowres", "occluded"], ["clothing", "digits", "shape"]),
}
WORLD_TASKS = {
    "shape": (["outline", "cluttered", "noise", "blur"], ["clothing", "digits", "animals"]),
    "colour": (["cluttered", "tint", "dim"], ["clothing", "digits", "animals"]),
}


class WorldImageSet(ImageSet):
    """A world set known by its recipe: labels and fingerprint without rendering, images on first load.

    The fingerprint hashes the recipe and the generator's source, so cached
    embeddings of a set are found again without drawing a single image.
    """

    def __init__(self, attribute: str, per_class: int, spec: world.WorldSpec, seed: int):
        self.attribute, self.per_class, self.spec, self.seed = attribute, per_class, spec, seed
        _, labels = world.labelled_set_labels(seed, attribute, per_class)
        self.labels = torch.from_numpy(labels).long()
        recipe = json.dumps({"attribute": attribute, "per_class": per_class, "spec": spec.describe(), "seed": seed,
                             "generator": world.generator_version()}, sort_keys=True)
        self.fingerprint = hashlib.sha256(recipe.encode()).hexdigest()[:16]

    @cached_property
    def images(self) -> torch.Tensor:
        return rendered_images(self.fingerprint, len(self.labels), lambda: torch.from_numpy(
            world.labelled_set(self.seed, self.attribute, self.per_class, self.spec).images))

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices]


class ShippedImageSet(ImageSet):
    """One split of a shipped collection, optionally shifted; fingerprinted by its recipe.

    The recipe names the asset's sha256, the split, the shift and the transforms'
    source, so cached embeddings are found again without decoding an image.
    """

    def __init__(self, collection: str, split: str, shift: str | None = None, per_class: int | None = None):
        self.collection, self.split, self.shift, self.per_class = collection, split, shift, per_class
        recipe = json.dumps({"collection": collection, "asset": shipped.manifest()["collections"][collection]["sha256"],
                             "split": split, "shift": shift, "per_class": per_class,
                             "transforms": shipped.transforms_version()}, sort_keys=True)
        self.fingerprint = hashlib.sha256(recipe.encode()).hexdigest()[:16]
        self._seed = zlib.crc32(f"default/{collection}/{split}/{shift}".encode())

    @cached_property
    def _rows(self) -> np.ndarray:
        labels = shipped.split_labels(self.collection, self.split)
        if self.per_class is None:
            return np.arange(len(labels))
        return np.sort(np.concatenate([np.flatnonzero(labels == c)[:self.per_class] for c in np.unique(labels)]))

    @cached_property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(shipped.split_labels(self.collection, self.split)[self._rows])

    @cached_property
    def images(self) -> torch.Tensor:
        images, _ = shipped.split(self.collection, self.split)
        return torch.from_numpy(shipped.canvas_images(images[self._rows], self.shift, self._seed))

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices]


def uci_digits() -> ImageSet:
    """scikit-learn's 8x8 digits (UCI; other writers, another resolution), drawn as MNIST draws digits."""
    images, labels = shipped.sklearn_digits()
    return TensorImageSet(torch.from_numpy(shipped.canvas_images(images)), torch.from_numpy(labels))


def _world_set(attribute: str, split: str, per_class: int, **spec_changes) -> Lazy:
    spec = world.with_style(world.ID_SPEC, **spec_changes)
    seed = zlib.crc32(f"default/{attribute}/{split}".encode())
    return Lazy(lambda: WorldImageSet(attribute, per_class, spec, seed),
                f"world {attribute} {split}: {per_class}/class, {spec.describe()}, seed {seed}")


def _shipped_set(collection: str, split: str, shift: str | None = None, per_class: int | None = None) -> Lazy:
    if shift == "uci-digits":
        return Lazy(uci_digits, "scikit-learn's 8x8 digits (1,797, UCI), scaled to MNIST's 20x20 box")
    return Lazy(lambda: ShippedImageSet(collection, split, shift, per_class),
                f"shipped {collection} {split}{'' if shift is None else ', ' + shift}")


def _world_task(attribute: str, description: str) -> Task:
    shifts, probes = WORLD_TASKS[attribute]
    return Task(
        name=attribute,
        classnames=list(world.ATTRIBUTES[attribute]),
        templates=TEMPLATES[attribute],
        train_template=TRAIN_TEMPLATES.get(attribute, "a photo of a {}."),
        train=_world_set(attribute, "train", TRAIN_PER_CLASS),
        test=_world_set(attribute, "test", TEST_PER_CLASS),
        shifts={s: _world_set(attribute, s, TEST_PER_CLASS, **WORLD_SHIFTS[s]) for s in shifts},
        probes=probes,
        description=description,
    )


def _real_task(name: str, description: str) -> Task:
    collection, shifts, probes = REAL_TASKS[name]
    return Task(
        name=name,
        classnames=shipped.classes(collection),
        templates=TEMPLATES[name],
        train_template=TRAIN_TEMPLATES.get(name, "a photo of a {}."),
        train=_shipped_set(collection, "train"),
        test=_shipped_set(collection, "test", per_class=TEST_PER_CLASS),
        shifts={s: _shipped_set(collection, "test", s, per_class=TEST_PER_CLASS) for s in shifts},
        probes=probes,
        description=description,
    )


def build_default_suite() -> Suite:
    tasks = {
        "shape": _world_task("shape", "world: 6 shapes, any colour/texture/size on plain backgrounds"),
        "colour": _world_task("colour", "world: 8 confusable hues, any shape/texture/size on plain backgrounds"),
        "clothing": _real_task("clothing", "Fashion-MNIST: 10 garments, 28x28 greyscale"),
        "digits": _real_task("digits", "MNIST: 10 handwritten digits, 28x28 greyscale"),
        "animals": _real_task("animals", "Animal-MNIST: 10 animal silhouettes, 28x28"),
    }
    return Suite("default", tasks, adapt_on=list(tasks),
                 description="Embedded, offline, CPU, minutes: the procedural world (shape, colour) and real "
                             "images that ship with clipbench (clothing, digits, animals); real and synthetic "
                             "shifts; forgetting probed on other datasets.")


def build_default_b2n_suite() -> Suite:
    """The default suite's tasks scored base-to-new (CoCoOp's protocol): adapt on half of each task's classes,
    score those (ID = base) and the other half (new), with the same shifts (on base classes) and probes.

    The halves are "balanced" (labels 0, 3, 4, 7, 8 base; 1, 2, 5, 6, 9 new): the shipped datasets' odd
    labels are class names the pretraining captions never use, and CoCoOp's first-half split would put them
    unevenly (zero-shot digits base 70.6 / new 39.8); balanced, every half of the shipped weights is at
    least 19 points above chance."""
    tasks = {name: dataclasses.replace(task, class_split=True, split_rule="balanced")
             for name, task in build_default_suite().tasks.items()}
    return Suite("default-b2n", tasks, adapt_on=list(tasks),
                 description="The default suite base-to-new: adapt on half of each task's classes (labels "
                             "0, 3, 4, 7, 8), score them and the unseen other half; shifts on base classes, "
                             "the same forgetting probes.")


def prompt_words() -> set[str]:
    """Every word of the suite's prompts and class names (the embedded model's vocabulary needs them)."""
    words = set()
    for name, templates in TEMPLATES.items():
        for t in templates + [TRAIN_TEMPLATES.get(name, "a photo of a {}.")]:
            words.update(t.replace("{}", " ").replace(".", " . ").split())
    for values in world.ATTRIBUTES.values():
        words.update(values)
    for collection in shipped.COLLECTIONS:
        for c in shipped.classes(collection):
            words.update(c.split())
    return words


@hookimpl
def clipbench_register_suites(register):
    register(build_default_suite())
    register(build_default_b2n_suite())
