"""How numbers are printed, the same in the terminal and on the leaderboard: what a reader needs, at a
precision the measurement supports."""

from __future__ import annotations

import math


def unsigned_zero(x: float, digits: int) -> str:
    """``x`` to ``digits`` decimals, without printing -0.0 for a tiny negative."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


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
    return f"{percent:.{digits}f}"
