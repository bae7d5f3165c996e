"""The method contract: what a plugin's method receives and what it returns.

A method turns (model, few-shot support, task, config) into an :class:`Adapted`
model.  ``Adapted`` scores images against any task's label space, so the
harness can evaluate it on the trained task, its shifts and the forgetting
probes with the same call.  By default it is zero-shot CLIP on whatever
encoders the method left behind.

There is exactly one way an adapted model is scored: the image encoder's
embeddings (taken from the embedding cache when the image tower is still the
pretrained one, encoded otherwise) go through :meth:`Adapted.logits_from_features`.
A method that adds a head, a cache or a feature adapter overrides that method
(or :meth:`Adapted.transform_image_features` / :meth:`Adapted.encode_text`,
which the default calls); ``logits`` itself is not overridable, so no head can
be skipped by the cached path.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import torch

from clipbench.cards import Deviation
from clipbench.config import check_values
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel
from clipbench.tasks import FewShot, Task


@dataclass
class AdaptContext:
    """What the harness hands a method besides its inputs.

    ``progress(done, total)`` reports training progress (the CLI draws the bar);
    ``epoch_finished(epoch, epochs, loss)`` reports an epoch's mean training loss
    (trackers plot it; the loops of :mod:`clipbench.training` call it for you; what counts as an epoch:
    :func:`clipbench.hookspecs.clipbench_epoch_finished`); ``generator`` is seeded
    from the cell's seed, for every random draw a method makes.
    """

    device: torch.device
    seed: int
    progress: Callable[[int, int], None] = lambda done, total: None
    epoch_finished: Callable[[int, int, float], None] = lambda epoch, epochs, loss: None

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)


class Adapted:
    """An adapted model: zero-shot CLIP over ``model``'s (possibly fine-tuned) encoders.

    ``trainable`` is the number of free parameters the method trained or added.
    The contract test checks it against what actually changed: entries of the
    model's weights that moved, plus the entries of ``added`` (tensors or modules
    the method trained and keeps beside the encoders: heads, adapters, offsets,
    the factors of a merged low-rank or orthogonal update).  ``generated`` names
    the model weights whose change is computed from ``added`` factors (a merged
    LoRA or OFT update), so their dense change is not counted twice.
    """

    # Whether :meth:`logits_from_features` reads the image tower's raw output instead of the L2-normalised
    # embedding (a head fit on raw features, as LP-FT's authors fit theirs): the harness hands it that, from
    # the cache or encoded, on every path.
    raw_features: ClassVar[bool] = False

    def __init__(self, model: ClipModel, trainable: int = 0, task: Task | None = None, *,
                 added: Iterable = (), generated: Iterable[str] = ()):
        self.model = model
        self.trainable = trainable
        self.task = task
        self.added = list(added)
        self.generated = set(generated)
        self.notes: dict = {}  # what a run should know about this adaptation (recorded in the cell)
        self._heads: dict[tuple, torch.Tensor] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "logits" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Adapted.logits: override logits_from_features(features, "
                            "task) instead, the one path by which every adapted model is scored (cached or not).")

    def transform_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """Map the encoder's image embeddings to the adapted ones (identity; feature adapters override)."""
        return features

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(texts)

    def text_head(self, task: Task) -> torch.Tensor:
        """Class embeddings (C, D): the template-averaged, renormalised prompt embeddings (CLIP)."""
        key = (task.name, tuple(task.classnames), tuple(task.templates))
        if key not in self._heads:
            self._heads[key] = zeroshot_head(self.encode_text, task)
        return self._heads[key]

    def logits_from_features(self, features: torch.Tensor, task: Task) -> torch.Tensor:
        """Class logits of the image encoder's embeddings: the one scoring path.

        Heads tied to the trained label space override this for their own task (``self.is_own_task(task)``)
        and fall back to ``super()`` elsewhere, so forgetting probes see the encoders; what can act on any
        class names (a learned prompt context: override :meth:`text_head`) acts on every task.
        """
        return self.model.logit_scale * self.transform_image_features(features) @ self.text_head(task).T

    def logits(self, images: torch.Tensor, task: Task) -> torch.Tensor:
        """Class logits of images: the encoder's embeddings through :meth:`logits_from_features`."""
        return self.logits_from_features(self.model.encode_image(images, normalize=not self.raw_features), task)

    def classify(self, images: torch.Tensor, task: Task) -> torch.Tensor:
        return self.logits(images, task).argmax(dim=-1)

    def is_own_task(self, task: Task) -> bool:
        """True for the task this model was adapted on (and hence its shifts)."""
        return self.task is not None and task.name == self.task.name and task.classnames == self.task.classnames


def zeroshot_head(encode_text: Callable[[list[str]], torch.Tensor], task: Task) -> torch.Tensor:
    prompts = [p for c in task.classnames for p in task.prompts(c)]
    emb = encode_text(prompts).view(task.num_classes, len(task.templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(emb, dim=-1)


class Method(abc.ABC):
    """Base class for methods; subclasses set the class attributes and implement ``adapt``.

    ``reference`` and ``deviations`` are the method's deviation card (:mod:`clipbench.cards`): what it was
    compared against (repository and file, or "paper only") and every known difference from it.
    """

    name: ClassVar[str]
    citation: ClassVar[str]
    config_class: ClassVar[type]
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    deviations: ClassVar[tuple[Deviation, ...]] = ()

    @abc.abstractmethod
    def adapt(self, model: ClipModel, fewshot: FewShot, task: Task, config: Any, ctx: AdaptContext) -> Adapted:
        """Fine-tune ``model`` (a private copy) on ``fewshot`` and return the adapted model."""

    def make_config(self, overrides: dict | None = None):
        """The method's config with ``overrides`` applied; unknown keys are a clear error."""
        overrides = overrides or {}
        known = {f.name: f for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ClipbenchError(f"Method {self.name!r} has no option(s) {', '.join(unknown)}. "
                                 f"Options: {', '.join(known) or 'none'}.")
        values = {}
        for key, raw in overrides.items():
            default = getattr(self.config_class(), key)
            values[key] = _coerce(raw, default, f"{self.name}.{key}")
        check_values(self.config_class, values, f"Option {self.name}.")
        return dataclasses.replace(self.config_class(), **values)


def _coerce(raw, default, where: str):
    if isinstance(default, tuple) and isinstance(raw, list):  # a config read back from a result file
        return tuple(raw)
    if isinstance(default, tuple) and isinstance(raw, str):
        if not default:
            raise ClipbenchError(f"Option {where} is an empty tuple by default; it cannot be set from text.")
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not items:
            raise ClipbenchError(f"Option {where} wants a comma-separated list, e.g. "
                                 f"{','.join(map(str, default[:3]))}; got {raw!r}.")
        return tuple(_coerce(item, default[0], where) for item in items)
    if not isinstance(raw, str) or isinstance(default, str):
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        raise ClipbenchError(f"Option {where} wants a {type(default).__name__}, got {raw!r}.") from None
    return raw
