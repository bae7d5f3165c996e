"""Terminal output: rich progress bars for a run and rich tables of its results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table

from clipbench.formatting import clock as _clock


class RichReporter:
    """In a terminal: an overall bar (cell i of n) above one bar per running stage (adapting,
    encoding, evaluating), dropped when finished.  Elsewhere (a batch log): one plain line per
    finished cell with its key numbers, cells done / total and an ETA.  In both, the plan first (what
    will run, where the results go, whether the cache is warm) and a line per zero-shot reference.

    The ETA comes from :class:`Eta`: recorded cell costs (earlier runs in --out, the committed board)
    scaled to this machine by the cells computed so far; the reference is never counted as a cell."""

    def __init__(self, console: Console, enabled: bool = True, log_cells: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.console = console
        self.enabled = enabled
        self.log_cells = (not console.is_terminal) if log_cells is None else log_cells
        self.progress = Progress(
            TextColumn("[bold blue]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
            disable=not enabled)
        self._overall = None
        self._clock = clock
        self._start = clock()
        self._computed = 0  # cells computed by this process (resumed ones cost nothing)
        self._cell_start: float | None = None
        self._reference: dict[str, float] = {}
        self._references_done: set[str] = set()
        self._references_total = 0
        self.eta: Eta | None = None
        self._workers = 1  # cells computed at once (a local sweep's worker processes)

    def _say(self, line: str) -> None:
        self.console.print(escape(line), highlight=False, soft_wrap=True)

    # ------------------------------------------------------------ the plan (runner.outline events)

    def planned(self, o) -> None:
        """The first line, as soon as the request is checked (before the model loads)."""
        per = f"{len(o.tasks)} task{'s' if len(o.tasks) != 1 else ''} x {len(o.seeds)} seed{'s' if len(o.seeds) != 1 else ''}"
        self._say(f"clipbench run: {', '.join(o.methods)} on suite {o.suite}: "
                  + (f"{len(o.methods)} methods x " if len(o.methods) > 1 else "")
                  + f"{per} = {o.cells} cell{'s' if o.cells != 1 else ''} (tasks {', '.join(o.tasks)}; seeds "
                  f"{','.join(map(str, o.seeds))}); model {o.model} on {o.device}; loading the model")

    def prepared(self, o) -> None:
        """Where the results go, what is done already, the reference and the cache, the first ETA."""
        for path in o.outputs:
            self._say(f"results: {path}")
        done = o.cells - len(o.pending)
        self._say(f"cells: {len(o.pending)} to run" + (f", {done} already done (resumed)" if done else ""))
        if o.hyper:
            self._say("hyper-parameters: " + "; ".join(o.hyper))
        self._references_total = len(o.references)
        cache = ("embedding cache off" if o.cache == "off" else
                 f"embedding cache {o.cache} ({o.cached_sets} of {o.scored_sets} test sets cached in {o.cache_dir})")
        if o.references:
            self._say(f"zero-shot reference: {len(o.references)} task{'s' if len(o.references) != 1 else ''} to "
                      f"score first (every test set, shift and probe with the pretrained model); {cache}")
        else:
            self._say(f"zero-shot reference: stored with the results; {cache}")
        recorded, sources = recorded_costs(o)
        self.eta = Eta(o.pending, recorded)
        guess = self.eta.seconds()
        if not o.pending:
            return
        if guess is not None:
            self._say(f"ETA of the cells: about {_clock(guess)} at the speed recorded in {', '.join(sources)}; "
                      "rescaled to this machine after the first cell")
        else:
            self._say("ETA: after the first cell (no recorded cost of these cells"
                      + (f" in {', '.join(sources)}" if sources else "") + ")")

    def reference_started(self, task: str) -> None:
        self._reference.setdefault(task, self._clock())

    def reference_finished(self, task: str) -> None:
        """One line per task, the first time (another method's run reuses the scores in memory)."""
        if task in self._references_done:
            return
        self._references_done.add(task)
        n = len(self._references_done)
        seconds = self._clock() - self._reference[task]
        self._say(f"zero-shot reference {n}/{max(self._references_total, n)}: {task} scored in {_clock(seconds)}")

    def cell_started(self, method: str, task: str, seed: int) -> None:
        self._cell_start = self._clock()

    def parallel(self, workers: int) -> None:
        """A sweep computes ``workers`` cells at once: the ETA divides the cells' time between them."""
        self._workers = max(1, workers)
        guess = self._eta_seconds()
        if guess is not None and self._workers > 1:
            self._say(f"{self._workers} cells at once: ETA of the cells about {_clock(guess)}")

    def _eta_seconds(self) -> float | None:
        """The cells' time left, shared by the cells computed at once (never more of them than cells left)."""
        seconds = self.eta.seconds() if self.eta is not None else None
        if seconds is None:
            return None
        return seconds / max(1, min(self._workers, len(self.eta.left)))

    # ------------------------------------------------------------ cells

    def cell_finished(self, done: int, total: int, method: str, cell: dict) -> None:
        if self.enabled and self._overall is None:
            self._overall = self.progress.add_task("cells", total=total)
        if self._overall is not None:
            self.progress.update(self._overall, completed=done, total=total)
        self._computed += 1
        now = self._clock()
        seconds = now - self._cell_start if self._cell_start is not None else None
        self._cell_start = None
        if seconds is None and self._workers > 1:  # a worker's cell: the time it recorded, under the same load
            seconds = cell_cost(cell)
        if self.eta is not None and seconds is not None:
            self.eta.finished(method, cell["task"], cell["seed"], seconds)
            eta = self._eta_seconds()
        else:  # no plan told or no time known (a cluster sweep): extrapolate from the cells so far
            eta = (now - self._start) / self._computed * (total - done)
        if self.log_cells:
            shifts = cell["shifts"].values()
            probes = cell["probes"].values()
            line = (f"cell {done}/{total} {method} {cell['task']} seed {cell['seed']}: ID {cell['id']:.1f}"
                    + (f", mean shift {sum(shifts) / len(shifts):.1f}" if shifts else "")
                    + (f", mean probe {sum(probes) / len(probes):.1f}" if probes else "")
                    + f"; adapt {cell['cost']['adapt_seconds']:.1f} s"
                    + (f", cell {_clock(seconds)}" if seconds is not None else "")
                    + f"; elapsed {_clock(now - self._start)}, ETA {'?' if eta is None else _clock(eta)}")
            self._say(line)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def stage(self, description: str, total: int) -> Callable[[int, int], None]:
        """A bar for a new stage; finished bars are dropped, an unfinished one stays (a stage inside it)."""
        for task in list(self.progress.tasks):
            if task.finished and task.id != self._overall:
                self.progress.remove_task(task.id)
        task_id = self.progress.add_task(description, total=max(total, 1))

        def tick(done: int, total_now: int) -> None:
            if task_id in self.progress.task_ids:
                self.progress.update(task_id, completed=done, total=max(total_now, 1))

        return tick


class Eta:
    """Seconds left for the cells still to run.

    A cell's recorded cost (its adaptation time plus its evaluation time, images scored / images per
    second, as result files record them) says how cells compare: a method is slower on a bigger task.
    The cells computed here say how fast this machine is: the remaining recorded costs are scaled by
    (their measured wall time) / (their recorded cost).  A cell with no recorded cost counts as the mean
    measured cell of its method (else of any method); before any cell is measured there is no scaling,
    and without a recorded cost no estimate."""

    def __init__(self, pending: list[tuple[str, str, int]], recorded: dict[tuple[str, str], float]):
        self.left = list(pending)
        self.recorded = dict(recorded)
        self.measured: list[tuple[str, str, float]] = []

    def finished(self, method: str, task: str, seed: int, seconds: float) -> None:
        if (method, task, seed) in self.left:
            self.left.remove((method, task, seed))
        self.measured.append((method, task, seconds))

    def seconds(self) -> float | None:
        def ratio(pairs):  # this machine's wall time per recorded second
            recorded = sum(r for r, _ in pairs)
            return sum(s for _, s in pairs) / recorded if pairs and recorded > 0 else None

        known = [(m, self.recorded[(m, t)], s) for m, t, s in self.measured if (m, t) in self.recorded]
        overall_ratio = ratio([(r, s) for _, r, s in known]) if self.measured else 1.0
        by_method: dict[str, list[float]] = {}
        for m, _, s in self.measured:
            by_method.setdefault(m, []).append(s)
        overall = [s for _, _, s in self.measured]
        total = 0.0
        for m, t, _ in self.left:
            # a method's own cells scale its recorded costs best (its fixed per-cell work included)
            scale = ratio([(r, s) for mm, r, s in known if mm == m]) or overall_ratio
            if (m, t) in self.recorded and scale is not None:
                total += scale * self.recorded[(m, t)]
            elif by_method.get(m):
                total += sum(by_method[m]) / len(by_method[m])
            elif overall:
                total += sum(overall) / len(overall)
            else:
                return None
        return total


def cell_cost(cell: dict) -> float | None:
    """A recorded cell's cost in seconds: adaptation plus evaluation (images scored / images per second)."""
    from clipbench import scoring

    cost = cell.get("cost") if isinstance(cell, dict) else None
    if not isinstance(cost, dict) or not scoring.is_finite(cost.get("adapt_seconds")):
        return None
    seconds = float(cost["adapt_seconds"])
    speed = cost.get("eval_images_per_second")
    if scoring.is_finite(speed) and speed > 0:
        try:
            seconds += sum(s["n"] for s in scoring.record_sets(cell).values()) / speed
        except (TypeError, KeyError, AttributeError):
            pass
    return seconds


BOARD = "leaderboards/results"  # the committed board of a clone: recorded costs of every built-in method


def recorded_costs(o) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Mean recorded cost of each (method, task) of an outline's cells, from result files of the same
    suite, method and model weights: those in --out (this run's finished cells among them), then the
    committed board.  Returns the costs and the folders they came from."""
    from pathlib import Path

    from clipbench import results

    import clipbench

    folders = [Path(o.out_dir), Path(BOARD), Path(clipbench.__file__).resolve().parent.parent / BOARD]
    wanted = {(m, t) for m, t, _ in o.pending}
    costs: dict[tuple[str, str], list[float]] = {}
    seen_files, sources = set(), []
    for folder in folders:
        try:
            files = sorted(folder.glob(f"{o.suite}__*.json")) if folder.is_dir() else []
        except OSError:
            continue
        used = False
        for path in files:
            if not any(path.name.startswith(f"{o.suite}__{m}__") for m in o.methods):
                continue
            try:
                key = path.resolve()
                if key in seen_files:
                    continue
                seen_files.add(key)
                data = results.read_json(path)
                cfg = data["config"]
                if cfg["suite"] != o.suite or cfg["model_fingerprint"] != o.model_fingerprint:
                    continue
                for cell in data["cells"]:
                    pair = (cfg["method"], cell["task"])
                    seconds = cell_cost(cell)
                    if pair in wanted and seconds is not None:
                        costs.setdefault(pair, []).append(seconds)
                        used = True
            except (results.ResultFileError, OSError, KeyError, TypeError, AttributeError):
                continue  # a damaged or foreign file tells nothing about costs
        if used:
            sources.append(str(folder))
    return {k: sum(v) / len(v) for k, v in costs.items()}, sources


def fmt(stat: dict | None, digits: int = 1, seeds: int | None = None) -> str:
    from clipbench.formatting import mean_std

    return mean_std(stat, digits, seeds)


def summary_tables(result: dict) -> list[Table]:
    """One narrow table per task: each measure for zero-shot and for the method, and the change."""
    from clipbench import scoring
    from clipbench.formatting import fixed, share, signed

    cfg = result["config"]
    tables = []
    for name, s in scoring.summarise(result["cells"], result["reference"])["tasks"].items():
        ref = result["reference"][name]
        excluded = s.get("excluded_probes") or {}
        table = Table(title=escape(f"{cfg['method']} on {cfg['suite']}/{name} ({cfg['model']}, {cfg['shots']}-shot, "
                                   f"seeds {','.join(map(str, s['seeds']))})"),
                      caption=escape("; ".join(f"probe {p}: {why}, so left out of forgetting and the score"
                                               for p, why in excluded.items())) or None)
        for col, justify in (("measure", "left"), ("zero-shot", "right"), (escape(cfg["method"]), "right"),
                             ("change", "right")):
            table.add_column(col, justify=justify)

        seeds = len(s["seeds"])

        def row(label, before, stat, style=None):
            delta = 0.0 if before is None or stat is None else stat["mean"] - before
            change = "" if before is None or stat is None else signed(delta, 1).replace("-0.0", "+0.0")
            table.add_row(label, "-" if before is None else fixed(before, 1), fmt(stat, 1, seeds), change, style=style)

        row("ID accuracy", ref["id"], s["id"], style="bold")
        for shift, stat in s["shifts"].items():
            row(f"  shift {escape(shift)}", ref["shifts"][shift], stat)
        if s.get("mean_shift"):
            row("mean shift", sum(ref["shifts"].values()) / len(ref["shifts"]), s["mean_shift"], style="bold")
        for probe, stat in s["probes"].items():
            row(f"  probe {escape(probe)}", ref["probes"][probe], stat)
        if s.get("mean_forgetting"):
            table.add_row("mean forgetting (pts)", "0.0", fmt(s["mean_forgetting"], 1, seeds), "", style="bold")
        for probe, why in (s.get("excluded_probes") or {}).items():
            table.add_row(f"  probe {escape(probe)} left out", "", "", "", style="dim")
        if s.get("new"):
            row("new classes", ref.get("new"), s["new"])
            table.add_row("base/new H", "", fixed(s['base_new_hm']['mean'], 1), "")
        zero_shot_score, _ = scoring.task_score(ref, ref["id"], ref.get("new"), ref["shifts"], ref["probes"])
        row("score (H above chance)", zero_shot_score, s["score"], style="bold")
        table.add_row("trainable %", "", share(s["trainable_pct"]["mean"]), "")
        caches = sorted({c["cost"].get("cache", "off") for c in result["cells"] if c["task"] == name})
        table.add_row("adapt seconds", "", fmt(s["adapt_seconds"], 1, seeds),
                      f"cache {'/'.join(caches)}" if caches != ["unused"] else "")
        tables.append(table)
    return tables


def run_labels(results: list[dict]) -> list[str]:
    """A name per result for tables and plots: its method, numbered where one method appears twice."""
    methods = [r["config"]["method"] for r in results]
    seen: dict[str, int] = {}
    labels = []
    for m in methods:
        seen[m] = seen.get(m, 0) + 1
        labels.append(m if methods.count(m) == 1 else f"{m} #{seen[m]}")
    return labels


@dataclass
class Comparison:
    """The uncertainty `report` shows beside the numbers, all from :func:`scoring.bootstrap`: each run's score
    interval (suite and per task) and, for every run that shares test sets (suite and model weights) and seeds
    with an earlier one, the paired difference from the first such run, its baseline."""

    labels: list[str]
    score_ci: dict[str, tuple[float, float] | None]
    task_ci: dict[str, dict[str, tuple[float, float]]]
    baseline: dict[str, str]  # label -> the label it is compared with
    difference: dict[str, tuple[float, float, float]]  # label -> (score - baseline's, lo, hi)
    task_difference: dict[str, dict[str, tuple[float, float, float]]]
    shared_seeds: dict[str, list[int]]  # label -> the seeds its difference is computed on


def compare(results: list[dict]) -> Comparison:
    """Bootstrap the runs: one paired bootstrap per group of runs on the same test sets (suite and model
    weights), its first run the baseline of the others; a run whose tasks or seeds differ from its group's
    gets its own intervals (the paired one covers only what the runs share)."""
    from clipbench import scoring

    labels = run_labels(results)
    out = Comparison(labels, {}, {}, {}, {}, {}, {})
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault((r["config"]["suite"], r["config"]["model_fingerprint"]), []).append(i)

    def cells_of(i):
        return {(c["task"], c["seed"]) for c in results[i]["cells"]}

    for members in groups.values():
        runs = {labels[i]: (results[i]["cells"], results[i]["reference"]) for i in members}
        base = labels[members[0]]
        joint = scoring.bootstrap(runs, pairs=[(base, labels[i]) for i in members[1:]]) if len(members) > 1 else None
        for i in members:
            label = labels[i]
            alone = joint
            if joint is None or cells_of(i) != {(t, s) for t in joint["tasks"] for s in joint["seeds"]}:
                alone = scoring.bootstrap({label: runs[label]})
            out.score_ci[label] = alone["score"].get(label)
            out.task_ci[label] = alone["task_score"].get(label, {})
            if joint is None or i == members[0]:
                continue
            key = tuple(sorted((base, label)))
            if key in joint["difference"]:
                sign = 1 if key == (label, base) else -1  # bootstrap keys pairs in name order: a - b
                obs, lo, hi = joint["difference"][key]
                out.baseline[label] = base
                out.shared_seeds[label] = list(joint["seeds"])
                out.difference[label] = (sign * obs, *sorted((sign * lo, sign * hi)))
                out.task_difference[label] = {t: (sign * o, *sorted((sign * l, sign * h)))
                                              for t, (o, l, h) in joint["task_difference"][key].items()}
    return out


def _interval(ci) -> str:
    from clipbench.formatting import fixed

    return f"[{fixed(ci[0], 1)}, {fixed(ci[1], 1)}]" if ci else "-"


def _delta(diff) -> str:
    """A paired difference with its interval; bold where the interval excludes zero (told apart)."""
    from clipbench.formatting import signed

    if not diff:
        return "-"
    obs, lo, hi = diff
    text = f"{signed(obs, 1)} [{signed(lo, 1)}, {signed(hi, 1)}]"
    return f"[bold]{text}[/]" if lo > 0 or hi < 0 else text


def _differences_caption(cmp: Comparison) -> str | None:
    """Which baseline each Δ is taken from and on which seeds, said once when they are all the same."""
    pairs = {(cmp.baseline[label], tuple(cmp.shared_seeds[label])) for label in cmp.labels if label in cmp.baseline}
    if not pairs:
        return None
    if len(pairs) == 1:
        [(base, seeds)] = pairs
        said = f"score minus {escape(base)}'s on seeds {','.join(map(str, seeds))}"
    else:
        said = "; ".join(f"{escape(label)} - {escape(cmp.baseline[label])} on seeds "
                         f"{','.join(map(str, cmp.shared_seeds[label]))}" for label in cmp.labels if label in cmp.baseline)
    return f"Δ score: {said}, paired bootstrap 95% interval (bold: it excludes 0)"


def task_comparison_tables(results: list[dict], cmp: Comparison | None = None) -> list[Table]:
    """One table per task with a row per run (and zero-shot's), side by side: ID, mean shift, mean
    forgetting, score with its 95% interval and the paired difference from the baseline run."""
    from clipbench import scoring
    from clipbench.formatting import fixed, share

    cmp = cmp or compare(results)
    summaries = [scoring.summarise(r["cells"], r["reference"])["tasks"] for r in results]
    order: dict[tuple[str, str], None] = {}
    for r, tasks in zip(results, summaries):
        for task in tasks:
            order[(r["config"]["suite"], task)] = None
    with_delta = bool(cmp.difference)
    tables = []
    for suite, task in order:
        present = [i for i, r in enumerate(results) if r["config"]["suite"] == suite and task in summaries[i]]
        has_new = any("new" in summaries[i][task] for i in present)
        seeds = sorted({s for i in present for s in summaries[i][task]["seeds"]})
        table = Table(title=escape(f"{suite}/{task}: runs side by side (mean ± std over seeds "
                                   f"{','.join(map(str, seeds))})"))
        cols = ["method", "ID"] + (["new"] if has_new else []) + ["shift", "forget", "score", "score 95%"] \
            + (["Δ score [95%]"] if with_delta else []) + ["train%", "adapt s"]
        for col in cols:
            table.add_column(col, justify="left" if col == "method" else "right",
                             no_wrap=col in ("method", "score 95%", "Δ score [95%]"))
        anchors = {}
        for i in present:  # zero-shot once per model
            r = results[i]
            anchors.setdefault(r["config"]["model_fingerprint"], (r["config"]["model"], r["reference"][task]))
        for model, ref in anchors.values():
            zs, _ = scoring.task_score(ref, ref["id"], ref.get("new"), ref["shifts"], ref["probes"])
            label = "zero-shot" if len(anchors) == 1 else f"zero-shot ({model})"
            row = [escape(label), fixed(ref["id"], 1)] + ([fixed(ref["new"], 1) if "new" in ref else "-"]
                                                        if has_new else [])
            row += [fixed(scoring.mean(ref["shifts"].values()), 1) if ref["shifts"] else "-",
                    "0.0" if ref["probes"] else "-", fixed(zs, 1), "-"] + (["-"] if with_delta else []) + ["0", "-"]
            table.add_row(*row, style="dim")
        for i in present:
            s, label = summaries[i][task], cmp.labels[i]
            n = len(s["seeds"])
            row = [escape(label), fmt(s["id"], 1, n)] + ([fmt(s.get("new"), 1, n)] if has_new else [])
            row += [fmt(s.get("mean_shift"), 1, n), fmt(s.get("mean_forgetting"), 1, n), fmt(s["score"], 1),
                    _interval(cmp.task_ci.get(label, {}).get(task))]
            if with_delta:
                row.append("baseline" if label in cmp.baseline.values() and label not in cmp.baseline
                           else _delta(cmp.task_difference.get(label, {}).get(task)))
            row += [share(s["trainable_pct"]["mean"]), fmt(s["adapt_seconds"], 1, n)]
            table.add_row(*row)
        excluded = sorted({p for i in present for p in summaries[i][task].get("excluded_probes") or {}})
        notes = [_differences_caption(cmp)] if with_delta else []
        if excluded:
            notes.append(f"probes left out of forgetting and the score (pretrained within "
                         f"{scoring.CHANCE_MARGIN:g} points of chance): {escape(', '.join(excluded))}")
        table.caption = "\n".join(n for n in notes if n) or None
        tables.append(table)
    return tables


def comparison_table(results: list[dict], cmp: Comparison | None = None) -> Table:
    """One row per result: the suite numbers of scoring.py (mean over tasks of seed means, ± std over seeds),
    the score's 95% interval and, where runs share seeds, the paired difference from the baseline run."""
    from clipbench import scoring
    from clipbench.formatting import share

    cmp = cmp or compare(results)
    with_delta = bool(cmp.difference)
    overall = [scoring.summarise(r["cells"], r["reference"])["overall"] for r in results]
    b2n = any("new" in o for o in overall)  # base-to-new tasks: ID is the base classes
    table = Table(title="Suite means over tasks (each a mean over seeds; ± std over seeds)",
                  caption="\n".join(filter(None, [
                      "ID: base classes; new: new-class accuracy; H: base-to-new harmonic mean of the mean base and "
                      "the mean new accuracy (CoCoOp's)" if b2n else "",
                      "score 95%: bootstrap over test images and seeds", _differences_caption(cmp)])))
    cols = ["method", "ID", *(["new", "H"] if b2n else []), "+ID", "shift", "+OOD", "forget", "score", "score 95%"] \
        + (["Δ score [95%]"] if with_delta else []) + ["train%", "adapt s"]
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right",
                         no_wrap=col in ("method", "score 95%", "Δ score [95%]"))
    for o, label in zip(overall, cmp.labels):

        def cell(key, digits=1):
            return fmt(o.get(key), digits)

        row = [escape(label), cell("id"), *([cell("new"), cell("base_new_hm")] if b2n else []),
               cell("id_gain"), cell("mean_shift"), cell("ood_gain"),
               cell("mean_forgetting"), cell("score"), _interval(cmp.score_ci.get(label))]
        if with_delta:
            row.append("baseline" if label in cmp.baseline.values() and label not in cmp.baseline
                       else _delta(cmp.difference.get(label)))
        table.add_row(*row, share((o.get("trainable_pct") or {}).get("mean")), cell("adapt_seconds"))
    return table
