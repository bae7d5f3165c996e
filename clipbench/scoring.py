"""The one score: forgetting, retention above chance, gains, the harmonic-mean score, mean ± std.

Pure arithmetic on the numbers a result file holds (no torch, no runner, no
file access), so the run summary, ``clipbench report`` and the leaderboard's
build, check and verify all call these functions and one file can never show
two scores.  The definition, stated once:

- Every accuracy is in percent; ``chance`` is 100 / (classes the set is scored on).
- An accuracy axis of the score is measured *above chance*:
  ``100 * (acc - chance) / (100 - chance)`` (guessing gives 0, perfection 100).
- Probe retention is measured above chance too:
  ``100 * (adapted - chance) / (pretrained - chance)``.  A probe whose pretrained
  accuracy is within ``CHANCE_MARGIN`` points of chance cannot be retained or
  forgotten measurably; it is left out of forgetting and retention and listed
  under ``excluded_probes`` with the reason.
- A task's score is the harmonic mean, computed from the seed means, of: ID
  accuracy above chance; new-class accuracy above chance (base-to-new tasks);
  mean shift accuracy above chance (tasks with shifts); mean probe retention
  (tasks with scorable probes).  An axis at or below zero makes the score 0.
- The suite score is the mean of the task scores; every other suite number is
  the mean over tasks of the seed means, with the standard deviation over seeds
  of the per-seed mean over tasks.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

CHANCE_MARGIN = 5.0  # points above chance a pretrained model must reach on a probe for it to be scored
DIGITS = 4  # summary numbers are rounded once, here

OVERALL_KEYS = ("id", "new", "mean_shift", "mean_forgetting", "id_gain", "ood_gain", "score",
                "trainable_pct", "adapt_seconds")


# ------------------------------------------------------------------ the pieces


def chance(num_classes: int) -> float:
    """Accuracy of guessing uniformly among ``num_classes`` classes, in percent."""
    return 100.0 / num_classes


def forgetting(pretrained_acc: float, adapted_acc: float) -> float:
    """Zero-shot accuracy lost on a probe, in points (lower is better; negative is a gain)."""
    return pretrained_acc - adapted_acc


def above_chance(acc: float, chance_acc: float) -> float:
    """Accuracy rescaled so that guessing is 0 and perfection 100 (negative below chance)."""
    return 100.0 * (acc - chance_acc) / (100.0 - chance_acc)


def retention(pretrained_acc: float, adapted_acc: float, chance_acc: float) -> float:
    """Probe skill kept above chance, as a percentage of the pretrained model's (can exceed 100)."""
    return 100.0 * (adapted_acc - chance_acc) / (pretrained_acc - chance_acc)


def scorable(pretrained_acc: float, chance_acc: float) -> bool:
    """Whether the pretrained model does a probe well enough above chance for its loss to be measured."""
    return pretrained_acc - chance_acc >= CHANCE_MARGIN


def harmonic_mean(values: Iterable[float]) -> float:
    """Harmonic mean; 0 if any value is 0 or below (one collapsed axis sinks the score); nan if empty."""
    values = list(values)
    if not values:
        return float("nan")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else float("nan")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; nan, nan for none)."""
    values = list(values)
    if not values:
        return float("nan"), float("nan")
    return mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def stat(values: Sequence[float]) -> dict:
    m, s = mean_std(values)
    return {"mean": round(m, DIGITS), "std": round(s, DIGITS)}


def is_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------ references


def reference_chance(ref: dict) -> dict:
    """The chance accuracies a zero-shot reference records (``ref["chance"]``), checked for shape."""
    return ref["chance"]


def excluded_probes(ref: dict) -> dict[str, str]:
    """Probes left out of the score because the pretrained model is within CHANCE_MARGIN of chance."""
    ch = reference_chance(ref)
    return {p: f"pretrained {acc:.1f} is within {CHANCE_MARGIN:g} points of chance {ch['probes'][p]:.1f}"
            for p, acc in sorted(ref["probes"].items()) if not scorable(acc, ch["probes"][p])}


# ------------------------------------------------------------------ one task


def task_score(ref: dict, id_acc: float, new_acc: float | None, shifts: dict[str, float],
               probes: dict[str, float]) -> tuple[float, dict]:
    """The score of one task from (seed-mean) accuracies, and the axes it is the harmonic mean of."""
    ch = reference_chance(ref)
    axes = {"id": above_chance(id_acc, ch["id"])}
    if new_acc is not None:
        axes["new"] = above_chance(new_acc, ch["new"])
    if shifts:
        axes["shift"] = mean(above_chance(shifts[s], ch["shifts"][s]) for s in sorted(shifts))
    kept = [p for p in sorted(probes) if scorable(ref["probes"][p], ch["probes"][p])]
    if kept:
        axes["retention"] = mean(retention(ref["probes"][p], probes[p], ch["probes"][p]) for p in kept)
    return harmonic_mean(axes.values()), axes


def summarise_task(group: list[dict], ref: dict) -> dict:
    """Mean ± std over seeds of every number of one task's cells, and the task's score."""
    group = sorted(group, key=lambda c: c["seed"])
    excluded = excluded_probes(ref)
    scored = [p for p in sorted(ref["probes"]) if p not in excluded]
    out = {"seeds": [c["seed"] for c in group], "id": stat([c["id"] for c in group])}
    out["shifts"] = {s: stat([c["shifts"][s] for c in group]) for s in sorted(ref["shifts"])}
    out["probes"] = {p: stat([c["probes"][p] for c in group]) for p in sorted(ref["probes"])}
    out["forgetting"] = {p: stat([forgetting(ref["probes"][p], c["probes"][p]) for c in group])
                         for p in sorted(ref["probes"])}
    out["excluded_probes"] = excluded
    shift_means = [mean(c["shifts"][s] for s in sorted(ref["shifts"])) for c in group] if ref["shifts"] else None
    out["mean_shift"] = stat(shift_means) if shift_means else None
    out["mean_forgetting"] = stat([mean(forgetting(ref["probes"][p], c["probes"][p]) for p in scored)
                                   for c in group]) if scored else None
    out["id_gain"] = stat([c["id"] - ref["id"] for c in group])
    out["ood_gain"] = stat([m - mean(ref["shifts"][s] for s in sorted(ref["shifts"])) for m in shift_means]) \
        if shift_means else None
    new_mean = None
    if "new" in ref:
        out["new"] = stat([c["new"] for c in group])
        new_mean = out["new"]["mean"]
        out["base_new_hm"] = round(harmonic_mean([out["id"]["mean"], new_mean]), DIGITS)
    score, axes = task_score(ref, out["id"]["mean"], new_mean, {s: v["mean"] for s, v in out["shifts"].items()},
                             {p: v["mean"] for p, v in out["probes"].items()})
    out["score"] = {"mean": round(score, DIGITS), "std": None}
    out["score_axes"] = {k: round(v, DIGITS) for k, v in axes.items()}
    for key in ("trainable_pct", "adapt_seconds", "peak_memory_mb"):
        out[key] = stat([c["cost"][key] for c in group])
    return out


# ------------------------------------------------------------------ a whole run


def summarise(cells: list[dict], references: dict[str, dict]) -> dict:
    """Per-task summaries and the suite-level numbers of one run (the definition in the module docstring)."""
    by_task: dict[str, list[dict]] = {}
    for cell in cells:
        by_task.setdefault(cell["task"], []).append(cell)
    tasks = {name: summarise_task(by_task[name], references[name]) for name in sorted(by_task)}
    return {"tasks": tasks, "overall": overall(tasks, by_task, references)}


def _per_cell(key: str, cell: dict, ref: dict) -> float | None:
    """The number behind a suite-level column for one cell (None where the task has no such axis)."""
    excluded = excluded_probes(ref)
    if key in ("id", "new"):
        return cell.get(key)
    if key == "mean_shift":
        return mean(cell["shifts"][s] for s in sorted(ref["shifts"])) if ref["shifts"] else None
    if key == "mean_forgetting":
        kept = [p for p in sorted(ref["probes"]) if p not in excluded]
        return mean(forgetting(ref["probes"][p], cell["probes"][p]) for p in kept) if kept else None
    if key == "id_gain":
        return cell["id"] - ref["id"]
    if key == "ood_gain":
        return (mean(cell["shifts"][s] for s in sorted(ref["shifts"]))
                - mean(ref["shifts"][s] for s in sorted(ref["shifts"]))) if ref["shifts"] else None
    if key in ("trainable_pct", "adapt_seconds"):
        return cell["cost"][key]
    raise KeyError(key)


def overall(tasks: dict[str, dict], by_task: dict[str, list[dict]], references: dict[str, dict]) -> dict:
    """Suite means over tasks (of seed means) with the std over seeds of the per-seed mean over tasks.

    The score has no std: it is the mean of task scores, each computed from seed means.
    """
    out: dict = {}
    if not tasks:
        return out
    common = sorted(set.intersection(*[{c["seed"] for c in g} for g in by_task.values()]))
    for key in OVERALL_KEYS:
        if key == "score":
            out[key] = {"mean": round(mean(t["score"]["mean"] for t in tasks.values()), DIGITS), "std": None}
            continue
        summary_key = {"new": "new"}.get(key, key)
        having = [name for name, t in tasks.items() if t.get(summary_key)]
        if not having:
            continue
        m = mean(tasks[name][summary_key]["mean"] for name in having)
        per_seed = []
        for seed in common:
            vals = [_per_cell(key, next(c for c in by_task[name] if c["seed"] == seed), references[name])
                    for name in having]
            vals = [v for v in vals if v is not None]
            if vals:
                per_seed.append(mean(vals))
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else (0.0 if per_seed else None)
        out[key] = {"mean": round(m, DIGITS), "std": None if std is None else round(std, DIGITS)}
    if "new" in out:
        out["base_new_hm"] = round(mean(t["base_new_hm"] for t in tasks.values() if "base_new_hm" in t), DIGITS)
    out["excluded_probes"] = sorted({f"{name}:{p}" for name, t in tasks.items() for p in t["excluded_probes"]})
    return out
