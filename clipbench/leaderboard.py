"""Markdown leaderboards from result files, and the checks a submitted result must pass.

``build`` is deterministic (same files in, same bytes out) so CI can prove the
committed Markdown is current.  ``check`` reads untrusted JSON: it reports every
problem as one line naming the field, and never raises on odd input.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from tabulate import tabulate

from clipbench import metrics, protocol, results

MAX_ACCURACY = 100.0
PATHLIKE = re.compile(r"(^/|^~|\.\./|\\|^[A-Za-z]:)")


# ------------------------------------------------------------------ check


def check(data, known_methods: set[str] | None = None, known_suites: set[str] | None = None) -> list[str]:
    """Every problem with a submitted result, one line each (empty: it is valid)."""
    problems = results.structural_problems(data)
    if problems:
        return problems
    problems += _check_values(data, "")
    cfg = data["config"]
    for key, kind in (("method", str), ("suite", str), ("tasks", list), ("seeds", list), ("shots", int),
                      ("model", str)):
        if not isinstance(cfg.get(key), kind) or isinstance(cfg.get(key), bool):
            problems.append(f"config.{key}: missing or not a {kind.__name__}")
    if problems:
        return problems
    if known_methods is not None and cfg["method"] not in known_methods:
        problems.append(f"config.method: {cfg['method']!r} is not a registered method")
    if known_suites is not None and cfg["suite"] not in known_suites:
        problems.append(f"config.suite: {cfg['suite']!r} is not a known suite")
    prov = data["provenance"]
    for key in ("model_fingerprint", "versions", "device", "data"):
        if not prov.get(key):
            problems.append(f"provenance.{key}: missing")
    if cfg.get("model_fingerprint") and prov.get("model_fingerprint") != cfg["model_fingerprint"]:
        problems.append("provenance.model_fingerprint: differs from config.model_fingerprint")
    cells = {}
    for i, cell in enumerate(data["cells"]):
        key = (cell.get("task"), cell.get("seed"))
        if key in cells:
            problems.append(f"cells[{i}]: duplicate cell for task {key[0]!r} seed {key[1]!r}")
        cells[key] = cell
        if cell.get("method", cfg["method"]) != cfg["method"]:
            problems.append(f"cells[{i}].method: {cell.get('method')!r} is not config.method")
    for task in cfg["tasks"]:
        if task not in data["reference"]:
            problems.append(f"reference.{task}: zero-shot reference missing")
        for seed in cfg["seeds"]:
            if (task, seed) not in cells:
                problems.append(f"cells: task {task!r} seed {seed!r} missing")
    for i, cell in enumerate(data["cells"]):
        ref = data["reference"].get(cell.get("task"))
        if ref is None:
            problems.append(f"cells[{i}].task: {cell.get('task')!r} is not in config.tasks")
            continue
        for part in ("shifts", "probes"):
            if not isinstance(cell.get(part), dict) or set(cell[part]) != set(ref.get(part, {})):
                problems.append(f"cells[{i}].{part}: names differ from the reference's")
    if problems:
        return problems
    try:
        recomputed = protocol.summarise(data["cells"], {t: data["reference"][t] for t in cfg["tasks"]})
    except Exception as exc:  # a malformed cell the checks above did not foresee
        return [f"cells: cannot be summarised ({type(exc).__name__}: {exc})"]
    if not _close(recomputed, data.get("summary")):
        problems.append("summary: differs from the summary recomputed from the cells")
    return problems


def _check_values(value, where: str) -> list[str]:
    """Types and ranges of every leaf: finite numbers, accuracies in [0, 100], no paths in strings."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                out.append(f"{where or 'top level'}: a non-string key")
                continue
            out += _check_values(v, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _check_values(v, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        out.append(f"{where}: not a finite number")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > 1e12:
        out.append(f"{where}: implausibly large number {value!r}")
    elif isinstance(value, str):
        if len(value) > 500:
            out.append(f"{where}: string longer than 500 characters")
        elif PATHLIKE.search(value):
            out.append(f"{where}: looks like a file path ({value[:40]!r})")
    if re.match(r"^cells\[\d+\]\.(id|new|shifts\.[^.]+|probes\.[^.]+)$", where) or \
            re.match(r"^reference\.[^.]+\.(id|new|shifts\.[^.]+|probes\.[^.]+)$", where):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= MAX_ACCURACY:
            out.append(f"{where}: an accuracy must be a number in [0, 100], got {value!r}")
    return out


def _close(a, b, tol: float = 1e-3) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, abs_tol=tol)
    return a == b


def check_file(path: Path, known_methods=None, known_suites=None) -> list[str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return [f"file: cannot be read ({exc})"]
    try:
        data = json.loads(text, parse_constant=lambda c: float("nan"))
    except (json.JSONDecodeError, RecursionError) as exc:
        return [f"file: not valid JSON ({exc})"]
    return check(data, known_methods, known_suites)


# ------------------------------------------------------------------ verify


def verify(data: dict, seed: int, registry, pm, tolerance: float = 0.5, out_dir: Path | None = None,
           data_root: Path | None = None) -> list[str]:
    """Re-run one seed of a result from its stored config; list every number off by more than ``tolerance``."""
    import tempfile

    from clipbench import runner

    cfg = data["config"]
    if seed not in cfg["seeds"]:
        return [f"seed {seed} is not in the result's seeds {cfg['seeds']}"]
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["method_config"].items()}
    with tempfile.TemporaryDirectory() as tmp:
        request = runner.RunRequest(methods=[cfg["method"]], suite=cfg["suite"], tasks=cfg["tasks"],
                                    shots=cfg["shots"], seeds=[seed], model=cfg["model"],
                                    pretrained=None if cfg["pretrained"] in ("world", "random") else cfg["pretrained"],
                                    out_dir=Path(out_dir or tmp), options={cfg["method"]: options},
                                    precision=cfg.get("precision", "fp32"), data=data_root)
        [path] = runner.execute(request, registry, pm)
        fresh = results.load_result(path)
    problems = []
    if fresh["config"]["model_fingerprint"] != cfg.get("model_fingerprint"):
        problems.append(f"model fingerprint {fresh['config']['model_fingerprint']} differs from the "
                        f"submission's {cfg.get('model_fingerprint')}: not the same weights")
    stored_data = data.get("provenance", {}).get("data", {})
    for name, fp in fresh["provenance"]["data"].items():
        if name in stored_data and stored_data[name] != fp:
            problems.append(f"data {name}: fingerprint {fp} differs from the submission's {stored_data[name]}: "
                            "not the same images")
    stored = {(c["task"], c["seed"]): c for c in data["cells"]}
    for cell in fresh["cells"]:
        old = stored[(cell["task"], seed)]
        pairs = [("id", old["id"], cell["id"])]
        if "new" in cell:
            pairs.append(("new", old["new"], cell["new"]))
        pairs += [(f"shifts.{k}", old["shifts"][k], v) for k, v in cell["shifts"].items()]
        pairs += [(f"probes.{k}", old["probes"][k], v) for k, v in cell["probes"].items()]
        for name, a, b in pairs:
            if abs(a - b) > tolerance:
                problems.append(f"{cell['task']} seed {seed} {name}: submitted {a:.2f}, re-run {b:.2f}")
    return problems


# ------------------------------------------------------------------ build


def per_seed_suite_means(data: dict) -> dict[str, list[float]]:
    """For each seed, the mean over tasks of each headline number; lists ordered by seed."""
    ref = data["reference"]
    seeds = sorted({c["seed"] for c in data["cells"]})
    out = {k: [] for k in ("id", "new", "shift", "forgetting", "score", "trainable_pct", "adapt_seconds")}
    for seed in seeds:
        cells = [c for c in data["cells"] if c["seed"] == seed]
        out["id"].append(metrics.mean(c["id"] for c in cells))
        new = [c["new"] for c in cells if "new" in c]
        out["new"].append(metrics.mean(new) if new else float("nan"))
        shifts = [metrics.mean(c["shifts"].values()) for c in cells if c["shifts"]]
        out["shift"].append(metrics.mean(shifts) if shifts else float("nan"))
        forg = [metrics.mean(ref[c["task"]]["probes"][p] - c["probes"][p] for p in c["probes"])
                for c in cells if c["probes"]]
        out["forgetting"].append(metrics.mean(forg) if forg else float("nan"))
        scores = [protocol.summarise_task([c], ref[c["task"]])["score"]["mean"] for c in cells]
        out["score"].append(metrics.mean(scores))
        out["trainable_pct"].append(metrics.mean(c["cost"]["trainable_pct"] for c in cells))
        out["adapt_seconds"].append(metrics.mean(c["cost"]["adapt_seconds"] for c in cells))
    return out


def _pm(values: list[float], digits: int = 1) -> str:
    m, s = metrics.mean_std(values)
    if not math.isfinite(m):
        return "-"
    return f"{_unsigned_zero(m, digits)} ± {_unsigned_zero(s, digits)}"


def _unsigned_zero(x: float, digits: int) -> str:
    """Format without printing -0.0 for tiny negatives."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def build(results_dir: Path, out_dir: Path) -> list[Path]:
    """Write leaderboards/<suite>.md for every suite with results; return the files written."""
    files = sorted(Path(results_dir).glob("*.json"))
    by_suite: dict[str, list[tuple[Path, dict]]] = {}
    for f in files:
        data = results.load_result(f)
        by_suite.setdefault(data["config"]["suite"], []).append((f, data))
    written = []
    for suite, entries in sorted(by_suite.items()):
        path = Path(out_dir) / f"{suite}.md"
        text = render_suite(suite, entries, path.parent)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


COLUMNS = [("ID acc", "id", max), ("new-class acc", "new", max), ("mean shift acc", "shift", max), ("probe forgetting", "forgetting", min),
           ("score", "score", max), ("trainable %", "trainable_pct", min), ("adapt s", "adapt_seconds", min)]


def render_suite(suite: str, entries: list[tuple[Path, dict]], base: Path) -> str:
    rows = []
    for path, data in entries:
        stats = per_seed_suite_means(data)
        rows.append((data, path, stats))
    rows.sort(key=lambda r: (-metrics.mean(r[2]["score"]), r[0]["config"]["method"], r[0]["config"]["model"]))
    # new-class accuracy only for suites with base-to-new tasks
    columns = [c for c in COLUMNS if c[1] != "new" or any(math.isfinite(metrics.mean(r[2]["new"])) for r in rows)]
    best = {}
    for _, key, pick in columns:
        vals = [metrics.mean(r[2][key]) for r in rows if math.isfinite(metrics.mean(r[2][key]))]
        best[key] = pick(vals) if vals else None
    table = []
    for data, path, stats in rows:
        cfg = data["config"]
        line = [cfg["method"], f"{cfg['model']} ({cfg['pretrained']})"]
        for _, key, _ in columns:
            digits = 4 if key == "trainable_pct" else 1
            cell = _pm(stats[key], digits)
            if best[key] is not None and math.isclose(metrics.mean(stats[key]), best[key], abs_tol=1e-9):
                cell = f"**{cell}**"
            line.append(cell)
        line.append(str(len(stats["id"])))
        line.append(f"[json](results/{path.name})")
        table.append(line)
    headers = ["method", "model"] + [c for c, _, _ in columns] + ["seeds", "result"]
    out = [f"# Leaderboard: `{suite}` suite", "",
           "Generated by `clipbench leaderboard build` from the result files in `leaderboards/results/`; "
           "do not edit by hand. Each number is the mean ± std over seeds of the mean over tasks. "
           "Forgetting is zero-shot probe accuracy lost (points, lower is better); the score is the "
           "harmonic mean of ID accuracy, mean shift accuracy and probe retention (and, for base-to-new tasks, "
           "new-class accuracy, with ID meaning base classes). Best per column in bold.",
           "", tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    tasks = sorted({t for _, d in entries for t in d["config"]["tasks"]})
    for task in tasks:
        has_new = any("new" in d["reference"].get(task, {}) for _, d in entries)
        sub = []
        for data, path, _ in rows:
            s = (data.get("summary") or {}).get("tasks", {}).get(task)
            if not s:
                continue
            sub.append([data["config"]["method"], _fmt(s["id"]), *([_fmt(s.get("new"))] if has_new else []),
                        _fmt(s["mean_shift"]), _fmt(s["mean_forgetting"]), f"{s['score']['mean']:.1f}"])
        ref = next(d["reference"][task] for _, d in entries if task in d["reference"])
        parts = [f"ID {ref['id']:.1f}"]
        if "new" in ref:
            parts.append(f"new classes {ref['new']:.1f}")
        for label, key in (("shifts", "shifts"), ("probes", "probes")):
            if ref[key]:
                parts.append(f"{label} " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(ref[key].items())))
        out += [f"## Task `{task}`", "", "Zero-shot reference: " + "; ".join(parts) + ".", "",
                tabulate(sub, headers=["method", "ID acc", *(["new-class acc"] if has_new else []),
                                       "mean shift acc", "probe forgetting", "score"],
                         tablefmt="github", disable_numparse=True), ""]
    return "\n".join(out)


def _fmt(stat) -> str:
    if not stat:
        return "-"
    return f"{_unsigned_zero(stat['mean'], 1)} ± {_unsigned_zero(stat['std'], 1)}"
