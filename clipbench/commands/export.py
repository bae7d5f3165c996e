"""`clipbench export`: result files as CSV or JSON lines, one row per cell, per task and per run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.errors import ClipbenchError
from clipbench.export import LEVELS  # pure (no torch): --help stays fast

EPILOG = """levels (the `level` column; --level picks some):
  cell   one task x seed: id, new, each shift.NAME and probe.NAME, the task's zeroshot.* reference,
         mean_shift, mean_probe, mean_forgetting, and the costs (trainable_params, adapt_seconds, ...)
  task   one task over its seeds: means, *_std (std over seeds), id_gain, ood_gain, score, and
         score_ci_low / score_ci_high, the score's 95% interval (paired bootstrap over test images and seeds)
  run    the suite numbers (means over tasks of seed means) and the suite score's 95% interval

Numbers stored in the result file are written exactly as stored; numbers computed by the export are
rounded once to 4 decimals, as every summary is. A column a row's level lacks is empty (CSV) or null (JSON).

examples:
  clipbench export results/ --level run --out runs.csv          one row per run, for a paper's table
  clipbench export results/*.json --level cell --format jsonl   every cell, for pandas.read_json(lines=True)"""


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="result files as CSV or JSON lines (for pandas, spreadsheets, papers)",
                         description="One row per cell (task x seed), per task summary and per run, each with "
                                     "the run's method, suite, model, fingerprints and hyper-parameter source; "
                                     "rows of many files stack into one table (pandas.read_csv).",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("files", nargs="+", type=Path, help="result files, or folders of them")
    exp.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="default: %(default)s")
    exp.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    exp.add_argument("--level", nargs="+", choices=LEVELS, default=list(LEVELS), metavar="LEVEL",
                     help="only rows of these levels: cell, task, run (default: all three, told apart by the "
                          "`level` column)")


def main(args, console: Console) -> int:
    from clipbench import export, results, submission

    files = results.result_files(args.files)
    all_rows = [row for data in submission.read_checked(files, "exported")
                for row in export.rows(data, tuple(args.level))]
    text = export.to_csv(all_rows) if args.format == "csv" else export.to_jsonl(all_rows)
    if args.out is None:
        if sys.stdout is None:
            raise ClipbenchError("Standard output is closed, so the export has nowhere to go: pass --out FILE.")
        sys.stdout.write(text)
        return 0
    if args.out.is_dir():
        raise ClipbenchError(f"--out {args.out} is a folder: name the file to write, e.g. {args.out}/results.csv.")
    if not args.out.parent.is_dir():
        raise ClipbenchError(f"--out {args.out}: the folder {args.out.parent} does not exist.")
    results.write_atomic(args.out, text)
    console.print(f"wrote {len(all_rows)} rows from {len(files)} file(s) to {escape(str(args.out))}", highlight=False)
    return 0
