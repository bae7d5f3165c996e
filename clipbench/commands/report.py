"""`clipbench report`: result files in the terminal, optionally plotted."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.errors import ClipbenchError


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="show result files (one or several) in the terminal, optionally plot them",
                         description="Print each result file's per-task tables, then one suite table of them "
                                     "all with each score's 95% interval; --plot draws ID accuracy against "
                                     "forgetting.")
    rep.add_argument("files", nargs="+", type=Path, help="result files (one per method)")
    rep.add_argument("--plot", type=Path, default=None,
                     help="write a PNG of ID accuracy vs forgetting per method, seed std as error bars, zero-shot "
                          "as the anchor (needs matplotlib, an optional extra: the `plot` extra of clipbench)")


def main(args, console: Console) -> int:
    if args.plot:  # the install hint before any work, where it is seen
        from clipbench.plot import require_matplotlib

        require_matplotlib()
    from clipbench import results, submission, ui

    loaded = []
    for f in args.files:
        try:
            data = results.read_json(f)
        except results.ResultFileError as exc:
            raise ClipbenchError(str(exc)) from None
        problems = submission.check(data, complete=False)
        if problems:
            raise ClipbenchError(f"{f} is not a result clipbench can report: {problems[0]}.")
        loaded.append(data)
    for r in loaded:
        for table in ui.summary_tables(r):
            console.print(table)
    console.print(ui.comparison_table(loaded))
    if args.plot:
        from clipbench.plot import tradeoff_plot

        tradeoff_plot(loaded, args.plot)
        console.print(f"plot: {escape(str(args.plot))}", highlight=False)
    return 0
