"""How numbers are printed, the same in the terminal and on the leaderboard: what a reader needs, at a
precision the measurement supports."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal


def fixed(x: float, digits: int) -> str:
    """The one rounding rule: ``x`` to ``digits`` decimals, half to even, on the stored decimal value (the
    shortest repr that reads back as ``x``: 44.55 -> 44.6 and 56.95 -> 57.0, never by the binary float's
    accident, which printed 44.5 and 57.0)."""
    if not math.isfinite(x):
        return str(x)
    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)
    return f"{q:f}"


def signed(x: float, digits: int) -> str:
    """``fixed`` with a sign always shown (+1.5, -0.3)."""
    text = fixed(x, digits)
    return text if text.startswith("-") else "+" + text


def unsigned_zero(x: float, digits: int) -> str:
    """``x`` to ``digits`` decimals, without printing -0.0 for a tiny negative."""
    text = fixed(x, digits)
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def truthful(x: float, threshold: float, digits: int = 1) -> str:
    """``x`` with enough decimals (up to 4) that it does not print as ``threshold`` or past it when it is
    not: 14.99 beside a limit of 15 prints 14.99, never 15.0."""
    for d in range(digits, 5):
        text = fixed(x, d)
        if (float(text) < threshold) == (x < threshold) and (float(text) == threshold) == (x == threshold):
            return text
    return repr(x)


def mean_std(stat: dict | None, digits: int = 1, seeds: int | None = None) -> str:
    """mean ± std over seeds; the mean alone where there is no spread to show (one seed, or no std)."""
    if not stat or not isinstance(stat.get("mean"), (int, float)) or not math.isfinite(stat["mean"]):
        return "-"
    if stat.get("std") is None or seeds == 1:
        return unsigned_zero(stat["mean"], digits)
    return f"{unsigned_zero(stat['mean'], digits)} ± {unsigned_zero(stat['std'], digits)}"


def share(percent: float | None) -> str:
    """A share of the model in percent at three significant digits: 100, 4.44, 0.127, 0.00661."""
    if percent is None or not math.isfinite(percent):
        return "-"
    if percent == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(percent)))))
    return fixed(percent, digits)


def clock(seconds: float) -> str:
    """A duration as H:MM:SS (ETAs and elapsed times in run and tune logs)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
