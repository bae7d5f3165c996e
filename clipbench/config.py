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
  1e-4, batch 128, 30 epochs, a constant learning rate: no warm-up, no decay),
  which A-CLIP and BitFit use.

:meth:`MethodConfig.schedule` turns a config into the
:class:`Schedule` the shared loop (:mod:`clipbench.training`) runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

FINETUNE_LR_GRID = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4]
DECAYS = ("cosine", "constant")  # the learning-rate shapes after warm-up a Schedule may ask for


def option(default, help: str = "", *, search: list | None = None, source: str | None = None,
           bounds: tuple | None = None, low: float | None = None, high: float | None = None,
           above: float | None = None, choices: tuple | None = None, ordered: bool = False):
    """A config field: its default (the paper's), what it means, where the value comes from, and the grid
    ``clipbench tune`` searches (``bounds`` limit how far a search at a grid edge may widen).

    ``low``/``high`` (inclusive) and ``above`` (exclusive) are the values the option accepts, ``choices``
    the only ones a text option accepts, ``ordered`` that a (smallest, largest) pair comes in that order; all
    are checked by :func:`check_values` wherever a value comes in (``--option``, tuned files, re-run results)
    before any work.  Without them the range follows from
    the name and the default (see :func:`limits`).
    """
    metadata = {"help": help}
    if search is not None:
        metadata["search"] = list(search)
    if source is not None:
        metadata["source"] = source
    if bounds is not None:
        metadata["bounds"] = tuple(bounds)
    for key, value in (("low", low), ("high", high), ("above", above)):
        if value is not None:
            metadata[key] = value
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if ordered:
        metadata["ordered"] = True
    return dataclasses.field(default=default, metadata=metadata)


_FRACTIONS = ("fraction", "momentum", "ratio")


def limits(name: str, default, metadata=None) -> tuple:
    """(low, high, above) an option's numbers must respect: the field's own ``low``/``high``/``above``, else
    implied by its name and default: learning rates above 0; sparsity above 0 and at most 1; fractions,
    momenta and ratios from 0 to 1; whole numbers of at least 1 (0 for ``epochs`` and
    ``steps``) where the default is positive; every other number with a non-negative default at least 0 -- unless
    the field's own search grid holds a value outside that range (then the method decides: no range)."""
    metadata = metadata or {}
    if any(k in metadata for k in ("low", "high", "above")):
        return metadata.get("low"), metadata.get("high"), metadata.get("above")
    implied = _implied(name, default)
    if any(_outside(v, *implied) for v in metadata.get("search", ())):  # the method searches beyond: its call
        return None, None, None
    return implied


def _outside(value, low, high, above) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (above is not None and not value > above) or (low is not None and value < low) or \
        (high is not None and value > high)


def _implied(name: str, default) -> tuple:
    sample = default[0] if isinstance(default, tuple) and default else default
    if isinstance(sample, bool) or not isinstance(sample, (int, float)):
        return None, None, None
    if name == "lr" or name.endswith("_lr"):
        return None, None, 0
    if name == "sparsity":
        return None, 1, 0
    if name.endswith(_FRACTIONS):
        return 0, 1, None
    if isinstance(sample, int) and sample > 0 and name not in ("epochs", "steps"):
        return 1, None, None
    return (0, None, None) if sample >= 0 else (None, None, None)


def _kind(value) -> str:
    return "true/false" if isinstance(value, bool) else "whole number" if isinstance(value, int) \
        else "number" if isinstance(value, float) else "text" if isinstance(value, str) else type(value).__name__


def check_value(field: dataclasses.Field, value, default) -> str | None:
    """What is wrong with ``value`` for ``field`` (whose default is ``default``), or None: the type of the
    default (a whole number is also a number; true/false is neither), finite, within :func:`limits`."""
    if isinstance(default, tuple):
        if not isinstance(value, (tuple, list)) or not value:
            return f"wants a non-empty list like {','.join(map(str, default))}, got {value!r}"
        if len(default) == 2 and len(value) != 2 and field.type and "..." not in str(field.type):
            return f"wants exactly 2 values, got {len(value)}"
        for item in value:
            problem = _check_scalar(field, item, default[0] if default else item, default)
            if problem:
                return problem
        if field.metadata.get("ordered") and list(value) != sorted(value):
            low, high, above = limits(field.name, default, field.metadata)
            lower = f"{above:g} < " if above is not None else f"{low:g} <= " if low is not None else ""
            upper = f" <= {high:g}" if high is not None else ""
            return (f"wants a smallest and a largest value with {lower}smallest <= largest{upper}, e.g. "
                    f"{','.join(f'{v:g}' for v in default)}; got {','.join(f'{v:g}' for v in value)}")
        return None
    return _check_scalar(field, value, default, default)


def _check_scalar(field: dataclasses.Field, value, default, whole_default) -> str | None:
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"wants true or false, got {value!r}"
    if isinstance(default, str):
        if not isinstance(value, str):
            return f"wants text, got {value!r}"
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None
    if isinstance(default, (int, float)):
        integer = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"wants a {_kind(default)}, got {value!r} ({_kind(value)})"
        if not math.isfinite(value):
            return f"wants a finite number, got {value!r}"
        low, high, above = limits(field.name, whole_default, field.metadata)
        if above is not None and not value > above:
            return f"must be above {above}, got {value!r}"
        if low is not None and value < low:
            return f"must be at least {low}, got {value!r}"
        if high is not None and value > high:
            return f"must be at most {high}, got {value!r}"
    return None


def check_values(config_class: type, values: dict, where: str) -> None:
    """Refuse (one ClipbenchError sentence) the first value in ``values`` its option does not accept;
    ``where`` says where the values came from, e.g. "Option linear-probe." or "tuned file x.json: ".
    Unknown names are the caller's to report."""
    from clipbench.errors import ClipbenchError

    problems = config_problems(config_class, values)
    if problems:
        raise ClipbenchError(f"{where}{problems[0]}.")


def config_problems(config_class: type, values: dict) -> list[str]:
    """Every value in ``values`` its option does not accept, as "lr must be above 0, got -1" (never raises)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    defaults = config_class()
    out = []
    for name, value in values.items():
        if name in fields:
            problem = check_value(fields[name], value, getattr(defaults, name))
            if problem:
                out.append(f"{name} {problem}")
    return out


@dataclass(frozen=True)
class Schedule:
    """Optimiser and schedule of one fine-tuning run (what a config's :meth:`MethodConfig.schedule` gives
    the shared loop; it lives beside the configs so that neither imports the loop)."""

    optimizer: str = "adamw"  # or "sgd"
    lr: float = 1e-5
    weight_decay: float = 0.1
    momentum: float = 0.9
    batch_size: int = 32
    epochs: int = 20
    warmup_fraction: float = 0.1
    grad_clip: float | None = None
    decay: str = "cosine"  # after the warm-up: "cosine" to 0, or "constant" (the A-CLIP authors' SGD)

    def total_steps(self, n: int) -> int:
        return self.epochs * math.ceil(n / min(self.batch_size, n))


@dataclass(frozen=True)
class MethodConfig:
    """The base of every method config (frozen dataclass; defaults from the paper)."""

    optimizer: ClassVar[str] = "adamw"  # the recipe's optimiser (a class constant, not an option)

    def schedule(self, **fixed):
        """The training :class:`Schedule` of this config: its fields named like the
        schedule's (lr, weight_decay, momentum, batch_size, epochs, warmup_fraction, grad_clip), the recipe's
        optimiser, and ``fixed`` for what the method sets itself (e.g. ``weight_decay=0.0``)."""
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
    """The A-CLIP authors' recipe (mit-ll/IIMM): SGD with momentum at a constant learning rate (no warm-up,
    no decay: their training loop never changes the rate)."""

    optimizer: ClassVar[str] = "sgd"

    lr: float = option(1e-6, "SGD learning rate", source="A-CLIP code: 1e-6")
    momentum: float = option(0.9, "SGD momentum", source="A-CLIP code: 0.9")
    weight_decay: float = option(1e-4, "SGD weight decay", source="A-CLIP code: 1e-4")
    batch_size: int = option(128, "images per step", source="A-CLIP code: 128")
    epochs: int = option(30, "passes over the support set", source="A-CLIP code: 30")
    decay: str = option("constant", "learning-rate schedule: 'constant' or 'cosine' (decay to 0)",
                        source="A-CLIP code: constant", choices=DECAYS)

    def schedule(self, **fixed):
        return super().schedule(**{"warmup_fraction": 0.0, **fixed})


def recorded_problems(config: dict, methods) -> list[str]:
    """Problems of the option values a result file records (``method_config`` and ``tuned``), as submission
    lines, when ``methods`` maps names to registered methods (a plain set of names checks nothing).  Never
    raises: a config of an unexpected shape is the structural checks' to report."""
    method = methods.get(config.get("method")) if isinstance(methods, dict) else None
    if method is None or not isinstance(config.get("method_config"), dict):
        return []
    try:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config["method_config"].items()}
        out = [f"config.method_config.{line}" for line in config_problems(method.config_class, values)]
        for task, tuned in (config.get("tuned") or {}).items():
            out += [f"config.tuned.{task}.{line}" for line in config_problems(method.config_class, tuned)]
        return out
    except Exception as exc:  # noqa: BLE001 -- a check never raises
        return [f"config.method_config: cannot be checked ({type(exc).__name__})"]
