"""Terminal output: rich progress bars for a run and rich tables of its results."""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table


class RichReporter:
    """In a terminal: an overall bar (cell i of n) above one bar per running stage (adapting,
    encoding, evaluating), dropped when finished.  Elsewhere (a batch log): one plain line per
    finished cell with its key numbers, cells done / total and an ETA."""

    def __init__(self, console: Console, enabled: bool = True, log_cells: bool | None = None):
        self.console = console
        self.enabled = enabled
        self.log_cells = (not console.is_terminal) if log_cells is None else log_cells
        self.progress = Progress(
            TextColumn("[bold blue]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
            disable=not enabled)
        self._overall = None
        self._start = time.perf_counter()
        self._computed = 0  # cells computed by this process (resumed ones cost nothing)

    def cell_finished(self, done: int, total: int, method: str, cell: dict) -> None:
        if self.enabled and self._overall is None:
            self._overall = self.progress.add_task("cells", total=total)
        if self._overall is not None:
            self.progress.update(self._overall, completed=done, total=total)
        self._computed += 1
        if self.log_cells:
            elapsed = time.perf_counter() - self._start
            eta = elapsed / self._computed * (total - done)
            shifts = cell["shifts"].values()
            probes = cell["probes"].values()
            line = (f"cell {done}/{total} {method} {cell['task']} seed {cell['seed']}: ID {cell['id']:.1f}"
                    + (f", mean shift {sum(shifts) / len(shifts):.1f}" if shifts else "")
                    + (f", mean probe {sum(probes) / len(probes):.1f}" if probes else "")
                    + f"; adapt {cell['cost']['adapt_seconds']:.1f} s; elapsed {_clock(elapsed)}, ETA {_clock(eta)}")
            self.console.print(escape(line), highlight=False, soft_wrap=True)

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


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
            table.add_row("base/new H", "", fixed(s['base_new_hm'], 1), "")
        zero_shot_score, _ = scoring.task_score(ref, ref["id"], ref.get("new"), ref["shifts"], ref["probes"])
        row("score (H above chance)", zero_shot_score, s["score"], style="bold")
        table.add_row("trainable %", "", share(s["trainable_pct"]["mean"]), "")
        caches = sorted({c["cost"].get("cache", "off") for c in result["cells"] if c["task"] == name})
        table.add_row("adapt seconds", "", fmt(s["adapt_seconds"], 1, seeds),
                      f"cache {'/'.join(caches)}" if caches != ["unused"] else "")
        tables.append(table)
    return tables


def comparison_table(results: list[dict]) -> Table:
    """One row per result: the suite numbers of scoring.py (mean over tasks of seed means, ± std over seeds)."""
    from clipbench import scoring
    from clipbench.formatting import fixed, share

    table = Table(title="Suite means over tasks (each a mean over seeds; ± std over seeds)",
                  caption="score 95%: bootstrap over test images and seeds")
    for col in ("method", "ID", "+ID", "shift", "+OOD", "forget", "score", "score 95%", "train%", "adapt s"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=col in ("method", "score 95%"))
    for r in results:
        o = scoring.summarise(r["cells"], r["reference"])["overall"]
        ci = scoring.bootstrap({"run": (r["cells"], r["reference"])})["score"].get("run")

        def cell(key, digits=1):
            return fmt(o.get(key), digits)

        table.add_row(escape(r["config"]["method"]), cell("id"), cell("id_gain"), cell("mean_shift"),
                      cell("ood_gain"), cell("mean_forgetting"), cell("score"),
                      f"[{fixed(ci[0], 1)}, {fixed(ci[1], 1)}]" if ci else "-", share((o.get("trainable_pct") or {}).get("mean")),
                      cell("adapt_seconds"))
    return table
