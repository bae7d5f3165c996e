"""Method configs: one base, fields that explain themselves, one way from a recipe to a training schedule.

A method's config is a frozen dataclass whose defaults are its paper's
hyper-parameters.  :func:`option` declares a field with its help text, where
the value comes from, and the values ``clipbench tune`` may choose from (at
most 8 combinations per method, the same budget for everyone).  The recipes
several papers share are bases here, so a method states only what differs:

- :class:`AdamWRecipe`: FLYP's fine-tuning recipe (AdamW, lr 1e-5, weight decay
  0.1, batch 32, 20 epochs, cosine after 10% warm-up), which full-ft, FLYP,
  LP-FT and WiSE-FT use;
- :class:`SGDRecipe`: the A-CLIP authors' (SGD, momentum 0.9, weight decay
  1e-4, batch 128, 30 epochs, no warm-up), which A-CLIP and BitFit use.

:meth:`MethodConfig.schedule` turns a config into the
:class:`clipbench.training.Schedule` the shared loop runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

FINETUNE_LR_GRID = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4]


def option(default, help: str = "", *, search: list | None = None, source: str | None = None,
           bounds: tuple | None = None):
    """A config field: its default (the paper's), what it means, where the value comes from, and the grid
    ``clipbench tune`` searches (``bounds`` limit how far a search at a grid edge may widen)."""
    metadata = {"help": help}
    if search is not None:
        metadata["search"] = list(search)
    if source is not None:
        metadata["source"] = source
    if bounds is not None:
        metadata["bounds"] = tuple(bounds)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class MethodConfig:
    """The base of every method config (frozen dataclass; defaults from the paper)."""

    optimizer: ClassVar[str] = "adamw"  # the recipe's optimiser (a class constant, not an option)

    def schedule(self, **fixed):
        """The training :class:`~clipbench.training.Schedule` of this config: its fields named like the
        schedule's (lr, weight_decay, momentum, batch_size, epochs, warmup_fraction, grad_clip), the recipe's
        optimiser, and ``fixed`` for what the method sets itself (e.g. ``weight_decay=0.0``)."""
        from clipbench.training import Schedule

        names = {f.name for f in dataclasses.fields(Schedule)}
        values = {"optimizer": self.optimizer}
        values.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names})
        values.update(fixed)
        return Schedule(**values)

    @classmethod
    def describe(cls) -> list[dict]:
        """Every option with its default, help, source and search grid (for `clipbench show method`)."""
        defaults = cls()
        return [{"name": f.name, "default": getattr(defaults, f.name), "help": f.metadata.get("help", ""),
                 "source": f.metadata.get("source"), "search": f.metadata.get("search")}
                for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class AdamWRecipe(MethodConfig):
    """FLYP's fine-tuning recipe (Goyal et al., CVPR 2023, section 4 and appendix)."""

    lr: float = option(1e-5, "AdamW learning rate", search=FINETUNE_LR_GRID, source="FLYP: 1e-5")
    weight_decay: float = option(0.1, "AdamW weight decay", source="FLYP: 0.1")
    batch_size: int = option(32, "images per step")
    epochs: int = option(20, "passes over the support set")
    warmup_fraction: float = option(0.1, "share of the steps spent warming up before the cosine decay")


@dataclass(frozen=True)
class SGDRecipe(MethodConfig):
    """The A-CLIP authors' recipe (mit-ll/IIMM): SGD with momentum, constant schedule after no warm-up."""

    optimizer: ClassVar[str] = "sgd"

    lr: float = option(1e-6, "SGD learning rate", source="A-CLIP code: 1e-6")
    momentum: float = option(0.9, "SGD momentum", source="A-CLIP code: 0.9")
    weight_decay: float = option(1e-4, "SGD weight decay", source="A-CLIP code: 1e-4")
    batch_size: int = option(128, "images per step", source="A-CLIP code: 128")
    epochs: int = option(30, "passes over the support set", source="A-CLIP code: 30")

    def schedule(self, **fixed):
        return super().schedule(**{"warmup_fraction": 0.0, **fixed})
