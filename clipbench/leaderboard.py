"""Markdown leaderboards from result files.

``render_all`` is pure and deterministic (same files in, same bytes out) so CI
can prove the committed Markdown is current without writing anything; ``build``
writes the pages, only inside its output folder.  Every file is checked in full
(:mod:`clipbench.submission`) before a single line is rendered, every number is
recomputed by :mod:`clipbench.scoring`, and every user string is escaped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from clipbench import claims, formatting, results, scoring, submission
from clipbench.errors import ClipbenchError

# ------------------------------------------------------------------ build


def _pm(stat: dict | None, digits: int = 1, seeds: int | None = None) -> str:
    """mean ± std of a summary number; the mean alone where it has no std (the score) or one seed."""
    return formatting.mean_std(stat, digits, seeds)


_unsigned_zero = formatting.unsigned_zero


RESULT_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}\.json$")


def load_checked(results_dir: Path, known_methods=None, suites=None, known_references=None,
                 known_models=None) -> list[tuple[Path, dict]]:
    """Every result file of a folder, each passing the full submission check; else one error naming them all."""
    files = sorted(Path(results_dir).glob("*.json"))
    loaded, bad = [], []
    for f in files:
        if not RESULT_FILE.fullmatch(f.name):
            bad.append(f"{f.name!r}: not a result file name (letters, digits, . _ + -, ending .json)")
            continue
        try:
            data = results.read_json(f)
        except results.ResultFileError as exc:
            bad.append(f"{f.name}: {exc}")
            continue
        problems = submission.check(data, known_methods, suites, known_references, known_models=known_models)
        if problems:
            bad.append(f"{f.name}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        else:
            loaded.append((f, data))
    bad += _reference_conflicts(loaded)
    bad += _same_runs(loaded)
    per_suite: dict[str, int] = {}
    for _, data in loaded:
        per_suite[data["config"]["suite"]] = per_suite.get(data["config"]["suite"], 0) + 1
    bad += [f"suite {suite!r} has {n} rows; a board holds at most {MAX_ROWS}" for suite, n in per_suite.items()
            if n > MAX_ROWS]
    if bad:
        raise ClipbenchError(f"{len(bad)} result file(s) fail the submission check, so no leaderboard was "
                             "written: " + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else "") +
                             " (`clipbench leaderboard check FILE` lists every problem).")
    return loaded


def _reference_conflicts(loaded: list[tuple[Path, dict]]) -> list[str]:
    """Results of one pretrained model on one suite must agree on its zero-shot reference."""
    seen: dict[tuple, tuple[str, dict]] = {}
    out = []
    for f, data in loaded:
        cfg = data["config"]
        for task, ref in sorted(data["reference"].items()):
            key = (cfg["model_fingerprint"], cfg.get("precision", "fp32"), cfg["suite"], task)
            if key in seen and seen[key][1] != ref:
                out.append(f"{f.name}: zero-shot reference of {task!r} differs from {seen[key][0]}'s "
                           "for the same model")
            seen.setdefault(key, (f.name, ref))
    return out


def run_identity(cfg: dict) -> tuple:
    """What makes two files one run whatever their names and seeds: suite, method, model weights, precision,
    shots and the method's configuration."""
    import json

    return (cfg["suite"], cfg["method"], cfg["model_fingerprint"], cfg.get("precision", "fp32"), cfg["shots"],
            json.dumps(cfg.get("method_config"), sort_keys=True))


def _same_runs(loaded: list[tuple[Path, dict]]) -> list[str]:
    """One row per run: the same run under two file names, or resubmitted on other seeds, is refused."""
    seen: dict[tuple, str] = {}
    out = []
    for f, data in loaded:
        key = run_identity(data["config"])
        if key in seen:
            out.append(f"{f.name}: the same run as {seen[key]} (method, model, shots and config; only the file "
                       "name or the seeds differ): one row per run")
        seen.setdefault(key, f.name)
    return out


def boards(entries: list[tuple[Path, dict]], known_models: dict | None = None) -> dict[str, Board]:
    """Suite name -> its :class:`Board`, for every suite with results (what both the Markdown and the site show)."""
    by_suite: dict[str, list[tuple[Path, dict]]] = {}
    for f, data in entries:
        by_suite.setdefault(data["config"]["suite"], []).append((f, data))
    out = {}
    for suite, group in sorted(by_suite.items()):
        if not results.SAFE_NAME.fullmatch(suite):  # checked already; never trust a name with a file path
            raise ClipbenchError(f"Suite name {suite!r} is not a safe file name.")
        out[suite] = board(suite, group, known_models)
    return out


def render_all(entries: list[tuple[Path, dict]], known_models: dict | None = None) -> dict[str, str]:
    """File name (``<suite>.md``) -> Markdown, for every suite with results."""
    return markdown_pages(boards(entries, known_models))


def markdown_pages(suite_boards: dict[str, Board]) -> dict[str, str]:
    return {f"{suite}.md": render_board(b) for suite, b in suite_boards.items()}


def build(results_dir: Path, out_dir: Path, known_methods=None, suites=None, known_references=None,
          known_models=None) -> list[Path]:
    """Check every result, then write ``out_dir/<suite>.md`` for every suite with results; return the pages."""
    return write_pages(render_all(load_checked(results_dir, known_methods, suites, known_references, known_models)),
                       out_dir)


def write_pages(pages: dict[str, str], out_dir: Path) -> list[Path]:
    """Write each page atomically into ``out_dir`` (unchanged pages are left alone); return their paths."""
    out = Path(out_dir).resolve()
    written = []
    for name, text in pages.items():
        path = (out / name).resolve()
        if path.parent != out:  # render_all makes safe names; this is the last guard
            raise ClipbenchError(f"Refusing to write {path}: outside {out}.")
        if not path.is_file() or path.read_text() != text:
            results.write_atomic(path, text)
        written.append(path)
    return written


def stale_pages(results_dir: Path, out_dir: Path, known_methods=None, suites=None,
                known_references=None, known_models=None) -> list[str]:
    """Pages that differ from a fresh build (or are missing), computed without writing anything."""
    pages = render_all(load_checked(results_dir, known_methods, suites, known_references, known_models))
    return [name for name, text in pages.items()
            if not (Path(out_dir) / name).is_file() or (Path(out_dir) / name).read_text() != text]


COLUMNS = [("ID acc", "id", max, 1), ("new-class acc", "new", max, 1), ("base-to-new H", "base_new_hm", max, 1),
           ("mean shift acc", "mean_shift", max, 1), ("probe forgetting", "mean_forgetting", min, 1),
           ("score", "score", max, 1), ("trainable %", "trainable_pct", min, None), ("adapt s", "adapt_seconds", min, 1)]
BASE_TO_NEW = ("new", "base_new_hm")  # columns a board shows only where its rows have base-to-new tasks

HEADER = ("Generated by `clipbench leaderboard build` from the result files in `leaderboards/results/`; "
          "do not edit by hand. Every number is recomputed from the cells by `clipbench/scoring.py`, the one "
          "definition that `clipbench run` and `clipbench report` also print. Each column but the score is the "
          "mean over tasks of the seed means, ± the std over seeds of the per-seed mean over tasks. "
          "Forgetting is zero-shot probe accuracy lost (points, lower is better). The **score** of a task is "
          "the harmonic mean, from the seed means, of ID accuracy, mean shift accuracy and mean probe "
          "retention (and, for base-to-new tasks, new-class accuracy, ID meaning base classes), every axis "
          "measured above chance: accuracy as 100 (acc - chance) / (100 - chance), retention as "
          "100 (adapted - chance) / (pretrained - chance), so guessing scores 0. A probe the pretrained model "
          "does within {margin:g} points of chance is left out of forgetting and retention (listed under its "
          "task). The suite score is the mean of the task scores. Hyper-parameters are \"tuned\" where "
          "`clipbench tune` chose them on validation splits of dedicated tuning seeds (the same trial budget for "
          "every method; values in each result's config), \"paper\" where the method's published defaults ran, "
          "\"set by hand\" where a submitter changed options. "
          "A row whose every probe image, in every cell, is scored exactly as the zero-shot model scores it has "
          "zero forgetting by construction, not as a measurement (its encoders are untouched where probes see "
          "them; what it learned is tied to the task's label space): its forgetting is marked \"encoders "
          "untouched\" and never bold; likewise a new-class accuracy whose every image is scored exactly as "
          "zero-shot (a head tied to the base classes answers new ones with the zero-shot classifier) is marked "
          "\"as zero-shot\" and never bold. A model whose weights (their fingerprint) are not in clipbench's registry "
          "of known weights is marked \"(unknown weights)\"; known weights under another name are refused. "
          "The score's 95% interval [lo, hi] and the paired intervals of score differences come from a "
          "bootstrap that redraws the test images of every scored set and the seeds ({replicates} "
          "replicates, the same draws for every method of one model), recomputing the score from each cell's "
          "per-image correctness. Best per column in bold.")


def summarised(data: dict) -> dict:
    """The summary of a result, recomputed from its cells (files do not store one; older files' is ignored)."""
    return scoring.summarise(data["cells"], {t: data["reference"][t] for t in data["config"]["tasks"]})


def hyperparameters(cfg: dict) -> str:
    """Where a row's hyper-parameters came from: tuned by the harness, the paper's, or set by hand."""
    if cfg.get("options"):
        return "tuned + set by hand" if cfg.get("tuned") else "set by hand"
    return "tuned" if cfg.get("tuned") else "paper"


def reference_parts(ref: dict) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """A zero-shot reference as labelled values: ("ID", "45.2"), ("shifts", [(name, "25.3"), ...]), ..."""
    parts: list = [("ID", formatting.fixed(ref["id"], 1))]
    if "new" in ref:
        parts.append(("new classes", formatting.fixed(ref["new"], 1)))
    for key in ("shifts", "probes"):
        if ref[key]:
            parts.append((key, [(k, formatting.fixed(v, 1)) for k, v in sorted(ref[key].items())]))
    return parts


def _parts_line(parts: list) -> str:
    return "; ".join(f"{label} {value}" if isinstance(value, str) else
                     f"{label} " + ", ".join(f"{md(k)} {v}" for k, v in value) for label, value in parts)


def _model_key(data: dict) -> tuple:
    cfg = data["config"]
    return cfg["model_fingerprint"], cfg.get("precision", "fp32")


def _seeds(data: dict) -> tuple[int, ...]:
    return tuple(sorted({c["seed"] for c in data["cells"]}))


def _boot_key(data: dict) -> tuple:
    """Rows bootstrapped together: one pretrained model and one set of seeds, so a row lacking a seed never
    changes the other rows' intervals (the bootstrap keeps only seeds every row of its group has)."""
    return _model_key(data) + (_seeds(data),)


def scored_as_zero_shot(data: dict, part: str) -> bool:
    """Whether one part of every cell, ``"probes"`` or ``"new"`` classes, is zero-shot by construction: each of
    its images scored exactly as the zero-shot reference scores it (decided from the per-image correctness,
    never from the method's name).  Probes so scored mean encoders left untouched (zero forgetting is then
    no measurement); new classes so scored mean nothing learned acts on unseen class names."""
    if part not in ("probes", "new"):
        raise ValueError(f"part must be 'probes' or 'new', not {part!r}")
    seen = 0
    for cell in data["cells"]:
        ref = data["reference"][cell["task"]]["correct"]
        if part == "probes":
            pairs = [(packed, ref["probes"].get(name)) for name, packed in cell["correct"]["probes"].items()]
        else:
            pairs = [] if cell["correct"].get("new") is None else [(cell["correct"]["new"], ref.get("new"))]
        for packed, reference in pairs:
            seen += 1
            if reference is None or scoring.images_differing(packed, reference) != 0:
                return False
    return seen > 0


def encoders_untouched(data: dict) -> bool:
    """Zero forgetting by construction: every probe image of every cell scored as the zero-shot reference."""
    return scored_as_zero_shot(data, "probes")


def new_as_zero_shot(data: dict) -> bool:
    """New-class accuracy that is zero-shot by construction (see :func:`scored_as_zero_shot`)."""
    return scored_as_zero_shot(data, "new")


def _row_name(path: Path) -> str:
    return path.name


MAX_ALL_PAIRS = 32  # a group of more rows compares ranking neighbours only (the work grows with every pair)
MAX_ROWS = 512  # rows per board: the bootstrap's work grows with every row


def intervals(rows: list[tuple[dict, Path, dict]]) -> dict[tuple, dict]:
    """The paired bootstrap of every group of rows that share a pretrained model (and so test sets) and seeds;
    ``rows`` in ranking order.  Every pair is compared up to MAX_ALL_PAIRS rows a group, neighbours beyond."""
    groups: dict[tuple, dict] = {}
    for data, path, _ in rows:
        groups.setdefault(_boot_key(data), {})[_row_name(path)] = (
            data["cells"], {t: data["reference"][t] for t in data["config"]["tasks"]})
    out = {}
    for key, runs in groups.items():
        names = list(runs)  # insertion order: the ranking
        pairs = None if len(names) <= MAX_ALL_PAIRS else list(zip(names, names[1:]))
        out[key] = scoring.bootstrap(runs, pairs=pairs, draws=True)  # draws: the claims' comparisons
        out[key]["neighbours_only"] = pairs is not None
    return out


@dataclass
class Cell:
    """One number of a row as the board shows it (``text``), its mean for sorting and plotting, and marks."""

    text: str
    mean: float | None
    best: bool = False
    note: str = ""  # "encoders untouched": zero by construction, never bold
    interval: str = ""  # the score's 95% interval, "[lo, hi]" (or "[-]")


@dataclass
class Row:
    """One result file's line of a board: raw names (escaped by each renderer) and formatted numbers."""

    data: dict
    path: Path
    summary: dict
    method: str
    model: str  # "<model> (<pretrained>)"
    unknown_weights: bool
    hyperparameters: str
    seeds: int
    untouched: bool
    cells: dict[str, Cell]


@dataclass
class Pair:
    """A paired bootstrap comparison of two rows (``a`` ranked above ``b``): the shown scores' difference."""

    a: Row
    b: Row
    difference: str
    interval: str
    told_apart: bool


@dataclass
class Separation:
    """Which differences are real, for one group of rows bootstrapped together."""

    title: str | None  # the group's model and seeds, where a board has several groups
    compared: int
    separated: int
    neighbours_only: bool
    seeds: list
    neighbours: list[Pair]
    pairs: list[Pair]  # every pair compared


@dataclass
class TaskTable:
    """One task's numbers per row, and the zero-shot reference of each pretrained model."""

    name: str
    has_new: bool
    references: list[tuple[str | None, list, dict[str, str]]]  # (model label or None, parts, excluded probes)
    rows: list[tuple[Row, dict[str, str]]]  # columns id, new, mean_shift, mean_forgetting, score, and
    # shift:<name> / forgetting:<probe> for each shift and probe


@dataclass
class Board:
    """Everything a suite's leaderboard shows, computed once: the Markdown page and the web site render it."""

    suite: str
    columns: list
    rows: list[Row]
    separation: list[Separation]
    tasks: list[TaskTable]
    shots: list[int]
    seeds: list[int]
    claims: list[ClaimTable] = field(default_factory=list)


@dataclass
class ClaimTable:
    """The papers' claims checked on one group of rows bootstrapped together (see :mod:`clipbench.claims`)."""

    title: str | None  # the group's model and seeds, where a board has several groups
    verdicts: list[claims.Verdict]


def _pair(b: dict, r1: Row, r2: Row) -> Pair:
    a, c = _row_name(r1.path), _row_name(r2.path)
    pairs = b["difference"]
    _, lo, hi = pairs[(a, c)] if (a, c) in pairs else (None, -pairs[(c, a)][2], -pairs[(c, a)][1])
    diff = r1.summary["overall"]["score"]["mean"] - r2.summary["overall"]["score"]["mean"]  # the shown scores'
    return Pair(r1, r2, formatting.signed(diff, 1), f"[{formatting.signed(lo, 1)}, {formatting.signed(hi, 1)}]",
                lo > 0 or hi < 0)


def _separation(rows: list[Row], boot: dict[tuple, dict]) -> list[Separation]:
    """How many method pairs the paired bootstrap tells apart, each pair of neighbours in the ranking, and
    every pair compared."""
    out = []
    several = len([k for k in boot if len(boot[k]["score"]) > 1]) > 1
    for key, b in boot.items():
        group = [r for r in rows if _boot_key(r.data) == key and _row_name(r.path) in b["score"]]
        if len(group) < 2:
            continue
        pairs = b["difference"]
        separated = sum(1 for _, lo, hi in pairs.values() if lo > 0 or hi < 0)
        title = _group_title(group, key, several)
        every = [_pair(b, r1, r2) for i, r1 in enumerate(group) for r2 in group[i + 1:]
                 if (_row_name(r1.path), _row_name(r2.path)) in pairs
                 or (_row_name(r2.path), _row_name(r1.path)) in pairs]
        out.append(Separation(title, len(pairs), separated, bool(b.get("neighbours_only")), list(b["seeds"]),
                              [_pair(b, r1, r2) for r1, r2 in zip(group, group[1:])], every))
    return out


def _group_title(group: list[Row], key: tuple, several: bool) -> str | None:
    return f"{group[0].data['config']['model']}, seeds {', '.join(map(str, key[-1]))}" if several else None


def _claims(rows: list[Row], boot: dict[tuple, dict]) -> list[ClaimTable]:
    """Every claim of :data:`clipbench.claims.CLAIMS` on each group of two or more rows bootstrapped together."""
    out = []
    several = len([k for k in boot if len(boot[k]["score"]) > 1]) > 1
    for key, b in boot.items():
        group = [r for r in rows if _boot_key(r.data) == key]
        if len(group) < 2:
            continue
        candidates = [claims.Candidate(r.method, _row_name(r.path), r.untouched) for r in group]
        out.append(ClaimTable(_group_title(group, key, several), claims.evaluate(candidates, b)))
    return out


def board(suite: str, entries: list[tuple[Path, dict]], known_models: dict | None = None) -> Board:
    """The numbers of one suite's board from checked result files, each computed once by scoring.py."""
    known_models = submission.known_models() if known_models is None else known_models
    ranked = [(data, path, summarised(data)) for path, data in entries]
    ranked.sort(key=lambda r: (-r[2]["overall"]["score"]["mean"], r[0]["config"]["method"],
                               r[0]["config"]["model"]))
    boot = intervals(ranked)
    # new-class accuracy and the base-to-new harmonic mean only for suites with base-to-new tasks
    columns = [c for c in COLUMNS if c[1] not in BASE_TO_NEW or any(c[1] in r[2]["overall"] for r in ranked)]
    untouched = {id(r[0]) for r in ranked if encoders_untouched(r[0])}
    zero_shot_new = {id(r[0]) for r in ranked if new_as_zero_shot(r[0])}
    marked = {"mean_forgetting": untouched, "new": zero_shot_new}  # by construction: noted, never the best
    best = {}
    for _, key, pick, _ in columns:
        vals = [r[2]["overall"][key]["mean"] for r in ranked if key in r[2]["overall"]
                and id(r[0]) not in marked.get(key, ())]
        best[key] = pick(vals) if vals else None
    rows = []
    for data, path, summary in ranked:
        cfg = data["config"]
        seeds = len({c["seed"] for c in data["cells"]})
        cells = {}
        for _, key, _, digits in columns:
            stat = summary["overall"].get(key)
            cell = Cell(formatting.share(stat["mean"]) if digits is None and stat else _pm(stat, digits, seeds),
                        stat["mean"] if stat else None)
            if key == "mean_forgetting" and id(data) in untouched and stat:
                cell.note = "encoders untouched"
            elif key == "new" and id(data) in zero_shot_new and stat:
                cell.note = "as zero-shot"
            elif stat and best[key] is not None and math.isclose(stat["mean"], best[key], abs_tol=1e-9):
                cell.best = True
            if key == "score":
                ci = boot[_boot_key(data)]["score"].get(_row_name(path))
                cell.interval = f"[{formatting.fixed(ci[0], 1)}, {formatting.fixed(ci[1], 1)}]" if ci else "[-]"
            cells[key] = cell
        rows.append(Row(data, path, summary, cfg["method"], f"{cfg['model']} ({cfg['pretrained']})",
                        cfg["model_fingerprint"] not in known_models, hyperparameters(cfg), seeds,
                        id(data) in untouched, cells))
    tasks = []
    for task in sorted({t for _, d in entries for t in d["config"]["tasks"]}):
        has_new = any("new" in d["reference"].get(task, {}) for _, d in entries)
        sub = []
        for row in rows:
            s = row.summary["tasks"].get(task)
            if not s:
                continue
            numbers = {"id": _fmt(s["id"]), "new": _fmt(s.get("new")),
                       "base_new_hm": formatting.fixed(s["base_new_hm"]["mean"], 1) if "base_new_hm" in s else "-",
                       "mean_shift": _fmt(s["mean_shift"]),
                       "mean_forgetting": _fmt(s["mean_forgetting"]), "score": formatting.fixed(s["score"]["mean"], 1)}
            numbers.update({f"shift:{k}": _fmt(v) for k, v in s["shifts"].items()})
            numbers.update({f"forgetting:{k}": _fmt(v) for k, v in s["forgetting"].items()})
            sub.append((row, numbers))
        models = {}  # one zero-shot reference per pretrained model (and precision) with results here
        for row in rows:
            cfg = row.data["config"]
            if task in row.data["reference"]:
                precision = cfg.get("precision", "fp32")
                label = f"{cfg['model']} ({cfg['pretrained']}{'' if precision == 'fp32' else ', ' + precision})"
                models.setdefault((cfg["model_fingerprint"], precision), (label, row.data["reference"][task]))
        references = [(label if len(models) > 1 else None, reference_parts(ref), scoring.excluded_probes(ref))
                      for label, ref in models.values()]
        tasks.append(TaskTable(task, has_new, references, sub))
    return Board(suite, columns, rows, _separation(rows, boot), tasks,
                 sorted({r.data["config"]["shots"] for r in rows}), sorted({s for r in rows for s in _seeds(r.data)}),
                 _claims(rows, boot))


def render_suite(suite: str, entries: list[tuple[Path, dict]], known_models: dict | None = None) -> str:
    return render_board(board(suite, entries, known_models))


def render_board(b: Board) -> str:
    """A board as the Markdown page: every user string escaped by :func:`md`."""
    table = []
    for row in b.rows:
        line = [md(row.method), md(row.model) + (" (unknown weights)" if row.unknown_weights else ""),
                row.hyperparameters]
        for _, key, _, _ in b.columns:
            cell = row.cells[key]
            text = cell.text + (f" ({cell.note})" if cell.note else "")
            text = f"**{text}**" if cell.best else text
            line.append(text + (f" {cell.interval}" if cell.interval else ""))
        line += [str(row.seeds), f"[json](results/{row.path.name})"]
        table.append(line)
    headers = ["method", "model", "hyper-parameters"] + [c for c, _, _, _ in b.columns] + ["seeds", "result"]
    out = [f"# Leaderboard: {md(b.suite)} suite", "",
           HEADER.format(margin=scoring.CHANCE_MARGIN, replicates=scoring.BOOTSTRAP_REPLICATES) + " " +
           protocol_sentence(b), "", tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    for sep in b.separation:
        out += [f"## Which differences are real{' (' + md(sep.title) + ')' if sep.title else ''}", "",
                separation_sentence(sep, "**") + " Neighbours in the ranking:", ""]
        table = [[f"{md(p.a.method)} − {md(p.b.method)}", p.difference, p.interval, "yes" if p.told_apart else "no"]
                 for p in sep.neighbours]
        out += [tabulate(table, headers=["pair", "score difference", "95% interval", "told apart"],
                         tablefmt="github", disable_numparse=True), ""]
    for ct in b.claims:
        out += [f"## Claims of the papers{' (' + md(ct.title) + ')' if ct.title else ''}", "", CLAIMS_HEADER, "",
                tabulate([[str(v.number), md_prose(v.claim.statement), md_prose(v.claim.source),
                           md_prose(v.comparison), v.estimate, md_prose(v.verdict)] for v in ct.verdicts],
                         headers=CLAIMS_COLUMNS, tablefmt="github", disable_numparse=True), "",
                "How each claim was made testable:", ""]
        out += [f"{v.number}. {md_prose(v.claim.statement)}: {md_prose(v.claim.testable)}" for v in ct.verdicts]
        out.append("")
    for t in b.tasks:
        out += [f"## Task {md(t.name)}", ""]
        for label, parts, excluded in t.references:
            prefix = "Zero-shot reference" + (f" of {md(label)}" if label else "")
            out.append(f"{prefix}: {_parts_line(parts)}.")
            if excluded:
                out.append("Left out of forgetting and the score: " +
                           "; ".join(f"probe {md(p)} ({why})" for p, why in excluded.items()) + ".")
        keys = ["id", *(["new", "base_new_hm"] if t.has_new else []), "mean_shift", "mean_forgetting", "score"]
        sub = [[md(row.method)] + [numbers[k] for k in keys] for row, numbers in t.rows]
        out += ["", tabulate(sub, headers=["method", "ID acc", *(["new-class acc", "base-to-new H"] if t.has_new else []),
                                            "mean shift acc", "probe forgetting", "score"],
                             tablefmt="github", disable_numparse=True), ""]
    return "\n".join(out)


CLAIMS_COLUMNS = ["#", "claim", "source", "comparison", "estimate [95%]", "verdict"]
CLAIMS_HEADER = (
    "Derived by `clipbench leaderboard build` from the result files above, never written by hand: each claim "
    "of the seed papers and of the field is a comparison of the board's numbers (means over tasks of the "
    "seed means), and its verdict follows from the paired 95% interval of that comparison, from the same "
    "bootstrap as the score intervals (the test images of every scored set and the seeds redrawn, the same "
    "draws for every row; forgetting against the zero-shot reference on the same drawn images). "
    "**reproduced**: the interval lies wholly on the claimed side of zero; **contradicted**: wholly on the "
    "other side; **not separable**: it covers zero; **not measured**: the board lacks a row or a number the "
    "claim needs (base-to-new claims become measurable when the results carry new-class accuracy). A claim "
    "of several parts holds only if every part does (contradicted if any part is); a comparison against "
    "several rows shows the least favourable one. A row with encoders untouched (forgetting zero by "
    "construction) never counts as winning a forgetting comparison. A method with several rows is "
    "represented by its highest-ranked one. The estimate is the difference of the board's numbers (before "
    "rounding; for a comparison with a stated constant, the row's own number), then its 95% interval.")


def md_prose(text) -> str:
    """clipbench's own sentences in Markdown: every markup character escaped but the backticks of `code`."""
    return MD_SPECIAL.sub(lambda m: m.group(1) if m.group(1) == "`" else "\\" + m.group(1),
                          str(text)).replace("\n", " ")


def protocol_sentence(b: Board) -> str:
    """The board's protocol: shots and evaluation seeds."""
    return (f"Every row: {' or '.join(map(str, b.shots))} shots per class, evaluation seeds "
            f"{', '.join(map(str, b.seeds))} (the suite's; a row lacking a seed is bootstrapped apart from the "
            "others).")


def separation_sentence(sep: Separation, strong: str = "") -> str:
    """How many pairs are told apart, in words (``strong`` marks the count: ** in Markdown)."""
    return (f"Of the {sep.compared} pairs of {'ranking neighbours' if sep.neighbours_only else 'methods'}"
            f"{f' (more than {MAX_ALL_PAIRS} rows: neighbours only)' if sep.neighbours_only else ''}, "
            f"{strong}{sep.separated}{strong} are told apart: the paired 95% interval "
            f"of their score difference excludes zero (bootstrap over the test images of every scored set "
            f"and the seeds {', '.join(map(str, sep.seeds))}).")


MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~!&])")


def md(text) -> str:
    """A user string made inert in Markdown and HTML: every markup character backslash-escaped."""
    return MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ").replace("\r", " ")


def _fmt(stat) -> str:
    if not stat:
        return "-"
    return f"{_unsigned_zero(stat['mean'], 1)} ± {_unsigned_zero(stat['std'], 1)}"
