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
- Uncertainty: every scored set keeps which of its images were classified
  correctly (``correct``: a packed bit string), so accuracies are recomputed from
  it and :func:`bootstrap` resamples test images and seeds together (paired
  across methods) to give a 95% interval for every score and every difference.
"""

from __future__ import annotations

import base64
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


def stat(values: Sequence[float], digits: int = DIGITS) -> dict:
    m, s = mean_std(values)
    return {"mean": round(m, digits), "std": round(s, digits)}


SHARE_DIGITS = 8  # a trainable share can be 0.0066%: kept to enough digits for three significant ones


def is_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------ references


def reference_chance(ref: dict) -> dict:
    """The chance accuracies a zero-shot reference records (``ref["chance"]``), checked for shape."""
    return ref["chance"]


def excluded_probes(ref: dict) -> dict[str, str]:
    """Probes left out of the score because the pretrained model is within CHANCE_MARGIN of chance."""
    from clipbench.formatting import fixed, truthful  # pure, like this module: the one formatter

    ch = reference_chance(ref)
    return {p: f"pretrained {truthful(acc, ch['probes'][p] + CHANCE_MARGIN)} is within {CHANCE_MARGIN:g} points "
               f"of chance {fixed(ch['probes'][p], 1)}"
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
        out["base_new_hm"] = {"mean": round(harmonic_mean([out["id"]["mean"], new_mean]), DIGITS), "std": None}
    score, axes = task_score(ref, out["id"]["mean"], new_mean, {s: v["mean"] for s, v in out["shifts"].items()},
                             {p: v["mean"] for p, v in out["probes"].items()})
    out["score"] = {"mean": round(score, DIGITS), "std": None}
    out["score_axes"] = {k: round(v, DIGITS) for k, v in axes.items()}
    for key in ("trainable_pct", "adapt_seconds", "peak_memory_mb"):
        out[key] = stat([c["cost"][key] for c in group], SHARE_DIGITS if key == "trainable_pct" else DIGITS)
    return out


# ------------------------------------------------------------------ a whole run


def summary_of(result: dict) -> dict | None:
    """The summary of a result record, from its cells and references (None before its first cell).  Result
    files do not store it: it is derived, and a change of this module must not make every file stale."""
    cells, refs = result.get("cells") or [], result.get("reference") or {}
    if not cells or any(c["task"] not in refs for c in cells):
        return None
    return summarise(cells, {t: refs[t] for t in {c["task"] for c in cells}})


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
        digits = SHARE_DIGITS if key == "trainable_pct" else DIGITS
        out[key] = {"mean": round(m, digits), "std": None if std is None else round(std, digits)}
    if "new" in out:  # CoCoOp's average row: the harmonic mean of the mean base and the mean new accuracy
        split = [t for t in tasks.values() if "base_new_hm" in t]
        out["base_new_hm"] = {"mean": round(harmonic_mean([mean(t["id"]["mean"] for t in split),
                                                           mean(t["new"]["mean"] for t in split)]), DIGITS),
                              "std": None}
    out["excluded_probes"] = sorted({f"{name}:{p}" for name, t in tasks.items() for p in t["excluded_probes"]})
    return out


# ------------------------------------------------------------------ per-image correctness


def pack_correct(flags: Sequence[bool]) -> dict:
    """Which images of a set were classified correctly, as {"n": images, "bits": base64, bit i = image i}."""
    raw = bytearray((len(flags) + 7) // 8)
    for i, ok in enumerate(flags):
        if ok:
            raw[i >> 3] |= 1 << (i & 7)
    return {"n": len(flags), "bits": base64.b64encode(bytes(raw)).decode("ascii")}


def correct_count(packed: dict) -> int:
    """How many images of a packed set were classified correctly (ValueError if it is malformed)."""
    n, raw = packed_parts(packed)
    return int.from_bytes(raw, "little").bit_count()


def packed_parts(packed: dict) -> tuple[int, bytes]:
    """(n, raw bytes) of a packed set, checked: valid base64 of exactly ceil(n/8) bytes, no bit past n."""
    if not isinstance(packed, dict) or set(packed) != {"n", "bits"}:
        raise ValueError("must be an object with exactly 'n' and 'bits'")
    n, bits = packed["n"], packed["bits"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SET_IMAGES:
        raise ValueError(f"'n' must be a whole number of images in [1, {MAX_SET_IMAGES}]")
    if not isinstance(bits, str) or len(bits) != 4 * (((n + 7) // 8 + 2) // 3):
        raise ValueError(f"'bits' must be base64 of {(n + 7) // 8} bytes")
    try:
        raw = base64.b64decode(bits, validate=True)
    except ValueError:
        raise ValueError("'bits' is not valid base64") from None
    if len(raw) != (n + 7) // 8 or int.from_bytes(raw, "little") >> n:
        raise ValueError(f"'bits' must hold exactly {n} bits")
    return n, raw


def images_differing(a: dict, b: dict) -> int | None:
    """How many images two packed records of one set classify differently (None: different sizes)."""
    (na, ra), (nb, rb) = packed_parts(a), packed_parts(b)
    if na != nb:
        return None
    return (int.from_bytes(ra, "little") ^ int.from_bytes(rb, "little")).bit_count()


def accuracy_from_correct(packed: dict) -> float:
    """The accuracy a packed set records: 100 * correct / n, computed as ``metrics.accuracy`` computes it."""
    return 100.0 * correct_count(packed) / packed["n"]


def record_sets(record: dict) -> dict[str, dict]:
    """A cell's or reference's packed sets by flat name: id, new, shifts.<name>, probes.<name>."""
    correct = record.get("correct") or {}
    out = {k: correct[k] for k in ("id", "new") if k in correct}
    for part in ("shifts", "probes"):
        out.update({f"{part}.{k}": v for k, v in (correct.get(part) or {}).items()})
    return out


def record_accuracies(record: dict) -> dict[str, float]:
    """A cell's or reference's accuracies by the same flat names as :func:`record_sets`."""
    out = {k: record[k] for k in ("id", "new") if k in record}
    for part in ("shifts", "probes"):
        out.update({f"{part}.{k}": v for k, v in record[part].items()})
    return out


# ------------------------------------------------------------------ the bootstrap

BOOTSTRAP_REPLICATES = 1000
MAX_SET_IMAGES = 200_000  # a scored set larger than this (ImageNet's validation set is 50,000) is refused
BOOTSTRAP_SEED = 20261201


def bootstrap(runs: dict[str, tuple[list[dict], dict[str, dict]]], replicates: int = BOOTSTRAP_REPLICATES,
              seed: int = BOOTSTRAP_SEED, pairs: list[tuple[str, str]] | None = None, draws: bool = False) -> dict:
    """95% intervals of suite scores and of every pairwise score difference: a paired bootstrap.

    ``runs`` maps a name to (cells, references) of runs on the *same* test sets (one
    suite, one pretrained model): each replicate draws the test images of every
    scored set with replacement and the seeds with replacement, the same draw for
    every run (so differences are paired), then recomputes each run's suite score
    exactly as :func:`summarise` does from seed means.  Probe retention keeps the
    pretrained accuracy on the whole probe set as its reference (common to every
    run, it cannot move a paired difference; resampled, a small probe set could put
    it at chance).  Only tasks and seeds every run has enter.  Returns {"score":
    {name: (lo, hi)}, "task_score": {name: {task: (lo, hi)}} (the same draws, one task's score),
    "difference": {(a, b): (observed a - b, lo, hi)}, "task_difference": {(a, b): {task: (observed a - b,
    lo, hi)}}, "replicates",
    "tasks", "seeds"}; a run without per-image correctness gets no interval.  ``pairs`` limits the
    differences computed to those pairs (the leaderboard bounds its work on large boards); default every pair.

    ``draws=True`` also keeps, under "draws", every run's replicates of each suite number of
    ``BOOTSTRAP_QUANTITIES`` ({name: {quantity: array}}, computed from the same resampled accuracies as the
    score, as :func:`overall` computes them from seed means; forgetting against the reference's accuracy on
    the same drawn images), and under "observed" the :func:`overall` of the cells compared, so
    :func:`difference_interval` gives the paired interval of any of them (the leaderboard's claims).

    The draws come from PCG64's raw output (not a numpy distribution method), so
    the intervals are the same bytes on any numpy version; replicates are drawn in
    blocks, so memory stays bounded for large sets.
    """
    import numpy as np

    names = sorted(n for n, (cells, refs) in runs.items() if cells and all("correct" in c for c in cells)
                   and all("correct" in refs[c["task"]] for c in cells))
    out = {"score": {}, "task_score": {}, "difference": {}, "task_difference": {}, "replicates": replicates,
           "tasks": [], "seeds": []}
    if not names:
        return out
    tasks = sorted(set.intersection(*[{c["task"] for c in runs[n][0]} for n in names]))
    seeds = sorted(set.intersection(*[{c["seed"] for c in runs[n][0] if c["task"] in tasks} for n in names]))
    tasks = [t for t in tasks if all(any(c["task"] == t and c["seed"] == s for c in runs[n][0])
                                     for n in names for s in seeds)]
    if not tasks or not seeds:
        return out
    out["tasks"], out["seeds"] = tasks, seeds
    bitgen = np.random.PCG64(seed)

    def draw(n: int, rows: int, size: int) -> np.ndarray:
        return (bitgen.random_raw(rows * size) % np.uint64(n)).astype(np.int64).reshape(rows, size)

    seed_draw = draw(len(seeds), replicates, len(seeds))  # (B, S): which seeds each replicate averages over
    scores = {n: np.zeros(replicates) for n in names}
    per_task: dict[str, dict[str, list]] = {n: {q: [] for q in (*BOOTSTRAP_QUANTITIES, "base")
                                                if q not in ("score", "base_new_hm")} for n in names}
    task_scores = {n: {t: np.zeros(replicates) for t in tasks} for n in names}
    for task in tasks:
        ref = runs[names[0]][1][task]
        cell = {n: {c["seed"]: c for c in runs[n][0] if c["task"] == task} for n in names}
        resampled: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}  # name -> key -> (B,) seed-mean acc
        reference: dict[str, np.ndarray] = {}  # probe key -> (B,) the reference's accuracy on the drawn images
        for key, packed_ref in sorted(record_sets(ref).items()):
            size = packed_ref["n"]
            bits = {n: np.stack([_unpack(record_sets(cell[n][s])[key], np) for s in seeds], axis=1) for n in names}
            per_seed = {n: np.empty((replicates, len(seeds))) for n in names}
            with_reference = draws and key.startswith("probes.")
            ref_bits = _unpack(packed_ref, np) if with_reference else None
            if with_reference:
                reference[key] = np.empty(replicates)
            block = max(1, min(replicates, 20_000_000 // size))
            for start in range(0, replicates, block):
                rows = min(block, replicates - start)
                drawn = draw(size, rows, size) + (np.arange(rows) * size)[:, None]  # (rows, n) images drawn
                weights = np.bincount(drawn.ravel(), minlength=rows * size).reshape(rows, size).astype(float)
                for n in names:
                    per_seed[n][start:start + rows] = 100.0 * weights @ bits[n] / size  # (rows, S)
                if with_reference:
                    reference[key][start:start + rows] = 100.0 * weights @ ref_bits / size
            for n in names:
                resampled[n][key] = np.take_along_axis(per_seed[n], seed_draw, axis=1).mean(axis=1)
        has_new = "new" in ref
        for n in names:
            r = resampled[n]
            for b in range(replicates):
                score, _ = task_score(
                    ref, float(r["id"][b]), float(r["new"][b]) if has_new else None,
                    {s: float(r["shifts." + s][b]) for s in ref["shifts"]},
                    {p: float(r["probes." + p][b]) for p in ref["probes"]})
                task_scores[n][task][b] = score
                scores[n][b] += score / len(tasks)
            if draws:
                _task_draws(per_task[n], ref, r, reference, replicates, np)
    observed, observed_task = {}, {}
    for n in names:
        out["score"][n] = percentile_interval(scores[n])
        out["task_score"][n] = {t: percentile_interval(task_scores[n][t]) for t in tasks}
        kept = [c for c in runs[n][0] if c["task"] in tasks and c["seed"] in seeds]
        summary = summarise(kept, {t: runs[n][1][t] for t in tasks})
        observed[n] = summary["overall"]
        observed_task[n] = {t: summary["tasks"][t]["score"]["mean"] for t in tasks}
    wanted = None if pairs is None else {tuple(sorted(pair)) for pair in pairs}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if wanted is not None and (a, b) not in wanted:
                continue
            lo, hi = percentile_interval(scores[a] - scores[b])
            out["difference"][(a, b)] = (round(observed[a]["score"]["mean"] - observed[b]["score"]["mean"], DIGITS),
                                         lo, hi)
            out["task_difference"][(a, b)] = {
                t: (round(observed_task[a][t] - observed_task[b][t], DIGITS),
                    *percentile_interval(task_scores[a][t] - task_scores[b][t])) for t in tasks}
    if draws:
        out["observed"] = observed
        out["draws"] = {n: _suite_draws(scores[n], per_task[n], np) for n in names}
    return out


def _suite_draws(scores, per_task: dict[str, list], np) -> dict:
    """A run's suite replicates: each quantity the mean of its tasks' replicates, and the base-to-new
    harmonic mean of the mean base and mean new replicates (as :func:`overall` computes it)."""
    out = {"score": scores, **{q: np.mean(np.stack(v), axis=0) for q, v in per_task.items() if v and q != "base"}}
    if per_task.get("new"):
        base, new = np.mean(np.stack(per_task["base"]), axis=0), out["new"]
        out["base_new_hm"] = np.where((base > 0) & (new > 0), 2 * base * new / np.maximum(base + new, 1e-12), 0.0)
    return out


BOOTSTRAP_QUANTITIES = ("score", "id", "new", "mean_shift", "mean_forgetting", "base_new_hm")


def _task_draws(into: dict[str, list], ref: dict, r: dict, reference: dict, replicates: int, np) -> None:
    """One task's replicates of the suite numbers of :func:`overall` (each the task's value from seed means;
    the suite's is their mean over the tasks that have it), appended to ``into``."""
    into["id"].append(r["id"])
    if "new" in ref:
        into["new"].append(r["new"])
        into["base"].append(r["id"])  # the ID accuracy of the tasks that have new classes, for base_new_hm
    if ref["shifts"]:
        into["mean_shift"].append(np.mean(np.stack([r["shifts." + s] for s in sorted(ref["shifts"])]), axis=0))
    kept = [p for p in sorted(ref["probes"]) if p not in excluded_probes(ref)]
    if kept:
        into["mean_forgetting"].append(np.mean(np.stack([reference["probes." + p] - r["probes." + p]
                                                         for p in kept]), axis=0))


def percentile_interval(values) -> tuple[float, float]:
    """The bootstrap's 95% interval of replicates: their 2.5th and 97.5th percentiles, rounded once."""
    import numpy as np

    lo, hi = np.percentile(values, [2.5, 97.5])
    return round(float(lo), DIGITS), round(float(hi), DIGITS)


def difference_interval(boot: dict, quantity: str, a: str, b: str | None = None) -> tuple[float, float] | None:
    """The paired 95% interval of ``quantity`` of run ``a`` minus run ``b`` (``a`` alone when ``b`` is None)
    from a ``bootstrap(..., draws=True)``: the same replicates, so the same draws of images and seeds for
    both; None where either run has no replicates of it."""
    draws = boot.get("draws", {})
    if quantity not in draws.get(a, {}) or (b is not None and quantity not in draws.get(b, {})):
        return None
    return percentile_interval(draws[a][quantity] - (draws[b][quantity] if b is not None else 0.0))


def _unpack(packed: dict, np):
    n, raw = packed_parts(packed)
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:n].astype(np.float64)
