"""`clipbench data check`: whether a suite's datasets are where clipbench looks."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipbench.commands.common import load_plugins
from clipbench.errors import ClipbenchError


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="check that a suite's real datasets are where clipbench looks",
                          description="check: per dataset of a suite, the folder looked in and whether it is "
                                      "present, missing or corrupt.")
    data_sub = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    dcheck = data_sub.add_parser("check", help="per dataset: present, missing or corrupt, with image counts",
                                 description="Look for every dataset a suite uses under --data and report, per "
                                             "dataset, the folder looked in, classes and images per split, "
                                             "and missing, empty or (with --decode) undecodable image files.")
    dcheck.add_argument("--suite", required=True, help="suite whose datasets to check, e.g. imagenet-dg")
    dcheck.add_argument("--data", type=Path, default=None,
                        help="root folder of the datasets (default: $CLIPBENCH_DATA_DIR)")
    dcheck.add_argument("--decode", action="store_true", help="also decode every image (slow on big datasets)")


def main(args, console: Console) -> int:
    from clipbench.tasks import default_data_dir

    pm, registry = load_plugins()
    suite = registry.suite(args.suite)
    root = args.data or default_data_dir()
    if not suite.datasets:
        console.print(escape(f"Suite {suite.name!r} declares no datasets read from disk: nothing to check."))
        return 0
    if root is None:
        raise ClipbenchError("Pass --data ROOT (the folder that holds your datasets) or set CLIPBENCH_DATA_DIR.")
    used = suite.datasets
    table = Table(title=escape(f"datasets of suite {suite.name} under {root}"))
    for col in ("dataset", "state", "classes", "images", "looked in", "problems"):
        table.add_column(col, overflow="fold", ratio=3 if col == "problems" else None)
    states = []
    for ds in used:
        st = ds.check(Path(root), decode=args.decode)
        states.append(st.state)
        colour = {"present": "green", "missing": "yellow", "corrupt": "red"}[st.state]
        counts = ", ".join(f"{k} {v:,}" for k, v in st.counts.items()) or "-"
        table.add_row(escape(st.dataset), f"[{colour}]{st.state}[/{colour}]", escape(str(st.classes or "-")),
                      escape(counts), escape(str(st.path)), escape("; ".join(st.problems) or "-"))
    console.print(table)
    summary = {s: states.count(s) for s in ("present", "missing", "corrupt")}
    console.print(f"{summary['present']} present, {summary['missing']} missing, {summary['corrupt']} corrupt "
                  f"of {len(states)} datasets. Expected layouts: README.md, section 'Dataset layouts under ROOT'.")
    return 0 if summary["present"] == len(states) else 1
