"""`clipbench report`: result files in the terminal, optionally plotted."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="compare result files side by side in the terminal, optionally plot them",
                         description="One file: its per-task tables (each measure, zero-shot beside the method) "
                                     "and its suite numbers. Several files: one table per task with a row per "
                                     "run, then the suite table; each score with its 95% interval and, for runs "
                                     "on the same suite, model and seeds, the paired difference from the first "
                                     "such file (the baseline) with its 95% interval.")
    rep.add_argument("files", nargs="+", type=Path, help="result files (one per method); the first is the baseline")
    rep.add_argument("--per-run", action="store_true",
                     help="with several files, also each run's own per-task tables (every shift and probe)")
    rep.add_argument("--plot", type=Path, default=None,
                     help="write a PNG: ID accuracy vs forgetting and vs mean shift accuracy (seed std as error "
                          "bars, zero-shot as the anchor), and each score with its 95%% interval (needs "
                          "matplotlib, an optional extra: the `plot` extra of clipbench)")


def main(args, console: Console) -> int:
    if args.plot:  # the install hint before any work, where it is seen
        from clipbench.plot import require_matplotlib

        require_matplotlib()
    from clipbench import submission, ui

    loaded = submission.read_checked(args.files, "reported")  # files only: the first is the baseline
    cmp = ui.compare(loaded)
    if len(loaded) == 1 or args.per_run:
        for r in loaded:
            for table in ui.summary_tables(r):
                console.print(table)
    if len(loaded) > 1:
        for table in ui.task_comparison_tables(loaded, cmp):
            console.print(table)
    console.print(ui.comparison_table(loaded, cmp))
    if args.plot:
        from clipbench.plot import tradeoff_plot

        tradeoff_plot(loaded, args.plot, cmp.score_ci)
        console.print(f"plot: {escape(str(args.plot))}", highlight=False)
    return 0
