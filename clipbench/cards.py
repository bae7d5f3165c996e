"""Deviation cards: every known difference between a method as clipbench runs it and its authors' code.

A method's card is two class attributes of its :class:`~clipbench.method.Method`:
``reference``, what it was compared against (a repository and file, or "paper
only" where no code was released), and ``deviations``, a tuple of
:class:`Deviation`: the aspect that differs (optimiser, schedule, loss, what
trains, augmentation, logit scale, what is searched, checkpoint, precision,
...), what the reference does, what clipbench does, whether the difference
moves numbers or is cosmetic, and why it is there.  ``clipbench show method
NAME`` prints the card; :func:`render` gives it as plain text.

This module knows nothing of any particular method and imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MOVES = "moves numbers"
COSMETIC = "cosmetic"


@dataclass(frozen=True)
class Deviation:
    """One difference from the reference: ``moves_numbers`` is False only where results are unchanged."""

    aspect: str
    reference: str
    clipbench: str
    moves_numbers: bool
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.moves_numbers, bool):
            raise TypeError(f"Deviation.moves_numbers must be True or False, got {self.moves_numbers!r}.")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "moves_numbers" and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"Deviation.{f.name} must be a non-empty string, got {value!r}.")

    @property
    def effect(self) -> str:
        """"moves numbers" or "cosmetic"."""
        return MOVES if self.moves_numbers else COSMETIC


def card_of(method) -> tuple[str, tuple[Deviation, ...]]:
    """(reference, deviations) of a method; a plugin that declares none has ("", ())."""
    return str(getattr(method, "reference", "") or ""), tuple(getattr(method, "deviations", ()) or ())


def summary(deviations: tuple[Deviation, ...]) -> str:
    """E.g. "5 known deviations, 4 move numbers"."""
    moving = sum(d.moves_numbers for d in deviations)
    return (f"{len(deviations)} known deviation{'' if len(deviations) == 1 else 's'}, "
            f"{moving} move{'s' if moving == 1 else ''} numbers")


def render(method) -> str:
    """The card as plain text: the reference, then one paragraph per deviation."""
    reference, deviations = card_of(method)
    lines = [f"reference: {reference or 'not stated'}"]
    if not deviations:
        lines.append("no deviations declared")
        return "\n".join(lines)
    lines.append(summary(deviations) + ":")
    for d in deviations:
        lines.append(f"- {d.aspect} ({d.effect}): reference {d.reference}; clipbench {d.clipbench}. {d.reason}")
    return "\n".join(lines)
