"""Built-in plugin: the embedded `default` suite on the procedural world.

The pretrained model saw filled shapes on black, white and grey backgrounds
(5% outlines), with noisy, partial captions.  Tasks are shape and colour
recognition on that distribution; shifts are what it barely or never saw
(outline "sketches", a cluttered background, pixel noise, blur for shapes; a
cluttered background, a coloured illuminant, dim light for colours); probes are
the attributes a task does not train (so forgetting is measured on skills the
fine-tuning data says nothing about).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from functools import cached_property

import torch

from clipbench.data import world
from clipbench.hookspecs import hookimpl
from clipbench.tasks import ImageSet, Lazy, Suite, Task

TRAIN_PER_CLASS = 64
TEST_PER_CLASS = 100

SHIFTS = {
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
    "texture": ["a photo of a {} shape.", "a {} object."],
    "size": ["a photo of a {} shape.", "a {} object."],
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
        return torch.from_numpy(world.labelled_set(self.seed, self.attribute, self.per_class, self.spec).images)

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices]


def _world_set(attribute: str, split: str, per_class: int, **spec_changes) -> Lazy:
    spec = world.with_style(world.ID_SPEC, **spec_changes)
    seed = zlib.crc32(f"default/{attribute}/{split}".encode())
    return Lazy(lambda: WorldImageSet(attribute, per_class, spec, seed),
                f"world {attribute} {split}: {per_class}/class, {spec.describe()}, seed {seed}")


def _task(attribute: str, shifts: list[str], probes: list[str], description: str) -> Task:
    return Task(
        name=attribute,
        classnames=list(world.ATTRIBUTES[attribute]),
        templates=TEMPLATES[attribute],
        train_template=TEMPLATES[attribute][0],  # "a photo of a {}." for shapes; colours name the shape
        train=_world_set(attribute, "train", TRAIN_PER_CLASS),
        test=_world_set(attribute, "test", TEST_PER_CLASS),
        shifts={s: _world_set(attribute, s, TEST_PER_CLASS, **SHIFTS[s]) for s in shifts},
        probes=probes,
        description=description,
    )


def build_default_suite() -> Suite:
    tasks = {
        "shape": _task("shape", ["outline", "cluttered", "noise", "blur"], ["colour", "texture", "size"],
                       "6 shapes, any colour/texture/size on plain backgrounds"),
        "colour": _task("colour", ["cluttered", "tint", "dim"], ["shape", "texture", "size"],
                        "8 confusable hues, any shape/texture/size on plain backgrounds"),
        "texture": _task("texture", [], [], "probe only: plain, striped or dotted"),
        "size": _task("size", [], [], "probe only: small or large"),
    }
    return Suite("default", tasks, adapt_on=["shape", "colour"],
                 description="Embedded procedural world: offline, CPU, minutes. "
                             "Tasks shape and colour; shifts outline, cluttered, noise, blur (shape) and "
                             "cluttered, tint, dim (colour); probes the untrained attributes.")


@hookimpl
def clipbench_register_suites(register):
    register(build_default_suite())
