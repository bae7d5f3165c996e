"""Result files as flat rows for pandas and papers: one row per cell, per task summary and per run.

Like CLIP_benchmark's ``build`` CSV: every row carries the run's identity
(method, suite, model, fingerprints, where its hyper-parameters came from) so
rows from many files stack into one table.  Numbers come from the cells and from
:mod:`clipbench.scoring` (the one definition), never from a file's own summary.

Three levels, told apart by the ``level`` column (``export --level`` picks some):
``cell`` (one task x seed, the accuracies as the result file stores them),
``task`` (mean and std over seeds, the task's score and its 95% interval) and
``run`` (the suite numbers and the suite score's 95% interval).  Numbers read
from the file are written as they are stored (the shortest text that reads back
as the same float); numbers computed here are rounded once, to
``scoring.DIGITS`` decimals like every summary, so no 18.900000000000002.
"""

from __future__ import annotations

import csv
import io
import json

from clipbench import scoring

IDENTITY = ["level", "method", "suite", "model", "pretrained", "model_fingerprint", "config_hash",
            "hyperparameters", "precision", "shots", "task", "seed"]
CELL = ["id", "new", "mean_shift", "mean_probe", "mean_forgetting", "trainable_params", "trainable_pct",
        "adapt_seconds", "peak_memory_mb", "eval_images_per_second"]
SUMMARY = ["id", "id_std", "new", "mean_shift", "mean_shift_std", "mean_forgetting", "mean_forgetting_std",
           "id_gain", "ood_gain", "score", "score_ci_low", "score_ci_high", "trainable_pct", "adapt_seconds", "seeds"]
LEVELS = ("cell", "task", "run")


def _hyperparameters(cfg: dict) -> str:
    if cfg.get("options"):
        return "tuned + set by hand" if cfg.get("tuned") else "set by hand"
    return "tuned" if cfg.get("tuned") else "paper"


def rows(data: dict, levels: tuple[str, ...] = LEVELS) -> list[dict]:
    """Flat rows of one result: every cell, then every task's summary, then the run's suite summary (those of
    ``levels``).  The task and run rows carry the score's 95% interval (:func:`scoring.bootstrap`)."""
    cfg = data["config"]
    base = {"method": cfg["method"], "suite": cfg["suite"], "model": cfg["model"], "pretrained": cfg["pretrained"],
            "model_fingerprint": cfg["model_fingerprint"], "config_hash": data["config_hash"],
            "hyperparameters": _hyperparameters(cfg), "precision": cfg.get("precision", "fp32"),
            "shots": cfg["shots"]}
    out = []
    refs = data["reference"]
    for cell in sorted(data["cells"], key=lambda c: (c["task"], c["seed"])) if "cell" in levels else ():
        ref = refs[cell["task"]]
        row = dict(base, level="cell", task=cell["task"], seed=cell["seed"], id=cell["id"], new=cell.get("new"))
        shifts, probes = cell["shifts"], cell["probes"]
        row["mean_shift"] = _rounded(scoring.mean(shifts.values())) if shifts else None
        row["mean_probe"] = _rounded(scoring.mean(probes.values())) if probes else None
        kept = [p for p in probes if p not in scoring.excluded_probes(ref)]
        row["mean_forgetting"] = _rounded(scoring.mean(scoring.forgetting(ref["probes"][p], probes[p])
                                                       for p in kept)) if kept else None
        row.update({k: cell["cost"].get(k) for k in CELL[5:]})
        row.update({f"shift.{k}": v for k, v in sorted(shifts.items())})
        row.update({f"probe.{k}": v for k, v in sorted(probes.items())})
        row.update({f"zeroshot.{k}": v for k, v in sorted(scoring.record_accuracies(ref).items())})
        out.append(row)
    summary = scoring.summarise(data["cells"], {t: refs[t] for t in {c["task"] for c in data["cells"]}})

    def stats(s: dict) -> dict:
        get = lambda key, part="mean": (s.get(key) or {}).get(part)
        return {"id": get("id"), "id_std": get("id", "std"), "new": get("new"), "mean_shift": get("mean_shift"),
                "mean_shift_std": get("mean_shift", "std"), "mean_forgetting": get("mean_forgetting"),
                "mean_forgetting_std": get("mean_forgetting", "std"), "id_gain": get("id_gain"),
                "ood_gain": get("ood_gain"), "score": get("score"), "trainable_pct": get("trainable_pct"),
                "adapt_seconds": get("adapt_seconds")}

    if "task" not in levels and "run" not in levels:
        return out
    task_ci, run_ci = intervals(data)
    if "task" in levels:
        for task, s in summary["tasks"].items():
            lo, hi = task_ci.get(task, (None, None))
            out.append(dict(base, level="task", task=task, seed=None, **stats(s), score_ci_low=lo, score_ci_high=hi,
                            seeds=" ".join(map(str, s["seeds"]))))
    if "run" in levels:
        seeds = sorted({c["seed"] for c in data["cells"]})
        lo, hi = run_ci or (None, None)
        out.append(dict(base, level="run", task=None, seed=None, **stats(summary["overall"]), score_ci_low=lo,
                        score_ci_high=hi, seeds=" ".join(map(str, seeds))))
    return out


def intervals(data: dict) -> tuple[dict[str, tuple[float, float]], tuple[float, float] | None]:
    """95% intervals of each task's score and of the suite score, from one bootstrap of the run.

    The bootstrap draws seeds the tasks share; a task that lacks one of them (a run still filling in)
    gets no interval rather than one of another number, and then neither does the suite score.
    """
    boot = scoring.bootstrap({"run": (data["cells"], data["reference"])})
    tasks = {c["task"] for c in data["cells"]}
    seeds = {t: sorted({c["seed"] for c in data["cells"] if c["task"] == t}) for t in tasks}
    task_ci = {t: ci for t, ci in boot["task_score"].get("run", {}).items() if seeds[t] == boot["seeds"]}
    run_ci = boot["score"].get("run") if set(task_ci) == tasks else None
    return task_ci, run_ci


def _rounded(x: float) -> float:
    """A number computed here (not read from the file), rounded once as the summaries are."""
    return round(x, scoring.DIGITS)


def columns(all_rows: list[dict]) -> list[str]:
    """The fixed columns, then every per-set column any row has (sorted), for one rectangular table."""
    fixed = IDENTITY + [c for c in dict.fromkeys(CELL + SUMMARY)]
    extra = sorted({k for r in all_rows for k in r} - set(fixed))
    return fixed + extra


def to_csv(all_rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(all_rows), restval="", lineterminator="\n")
    writer.writeheader()
    for r in all_rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def to_jsonl(all_rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in all_rows)
