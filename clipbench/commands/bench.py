"""`clipbench bench`: the timed kernels against this machine's matmul peak."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipbench.errors import ClipbenchError


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="run the timed kernels (pytest-benchmark) and print their table",
                           description="Times image encoding, the methods' kernels and the metrics, each "
                                       "beside this machine's fp32 matmul peak measured in the same run.")
    bench.add_argument("pytest_args", nargs="*", help="extra pytest arguments after --, e.g. clipbench bench -- -k encoding")


def kernels_dir() -> Path:
    """The benchmark modules of the source checkout this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[2] / "tests" / "benchmarks"


def main(args, console: Console) -> int:
    import pytest

    where = kernels_dir()
    if not where.is_dir():
        raise ClipbenchError(f"The timed kernels live in the source checkout (looked in {where}); "
                             "run `clipbench bench` from a clone of the repository.")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.json"
        code = int(pytest.main([str(where), "-m", "benchmarks", "-q", "--benchmark-columns=min,median",
                                "--benchmark-sort=name", f"--benchmark-json={report}", *args.pytest_args]))
        if not report.is_file():
            return code or 1
        data = json.loads(report.read_text())
    table = Table(title="timed kernels (best of rounds) against this machine's fp32 matmul peak, same run")
    for col in ("kernel", "best ms", "items/s", "GFLOP/s", "peak GFLOP/s", "of peak", "ratio"):
        table.add_column(col, justify="left" if col in ("kernel", "ratio") else "right", no_wrap=col == "kernel")
    for b in sorted(data["benchmarks"], key=lambda b: b["name"]):
        info = b.get("extra_info", {})
        rate = next((v for k, v in info.items() if k.endswith("_per_second")), None)
        ratio = f"{info['ratio']}x {info.get('ratio_of', '')}" if "ratio" in info else ""
        if "cells_equal_to_published" in info:
            ratio += f"; cells equal to the published row: {info['cells_equal_to_published']}"
        table.add_row(escape(b["name"].removeprefix("test_").replace("_of_a_frozen_encoder_method", "")),
                      f"{b['stats']['min'] * 1000:.1f}",
                      "-" if rate is None else f"{rate:,.0f}",
                      *(f"{info[k]:{f}}" if k in info else "-" for k, f in
                        (("gflops", ".1f"), ("peak_gflops", ".1f"), ("fraction_of_peak", ".0%"))), ratio)
    console.print(table)
    notes = [(b["name"], b["extra_info"]["breakdown"]) for b in sorted(data["benchmarks"], key=lambda b: b["name"])
             if "breakdown" in b.get("extra_info", {})]
    if notes:
        where = Table(title="where a default-suite cell spends its time (one method of each kind)")
        where.add_column("cell", no_wrap=True)
        where.add_column("adapt / evaluate / harness")
        for name, text in notes:
            where.add_row(escape(name.removeprefix("test_where_a_cell_spends_its_time")), escape(text))
        console.print(where)
    board = recorded_board_cost(kernels_dir().parents[1] / "leaderboards" / "results")
    if board is not None:
        console.print(escape(board))
    return code


def recorded_board_cost(results_dir: Path, workers: int = 2) -> str | None:
    """What the committed board's cells recorded (adapting, and evaluating at the recorded images per
    second), spread over ``workers`` workers: the whole board's time as it was last made, not re-measured."""
    from clipbench import results, submission

    adapt = evaluate = cells = 0.0
    for path in sorted(results_dir.glob("*.json")):
        try:  # read with every bound and checked like any result file; a file that fails says nothing here
            data = results.read_json(path)
        except results.ResultFileError:
            continue
        if submission.check(data, complete=False):
            continue
        for cell in data["cells"]:
            cost, correct = cell.get("cost", {}), cell.get("correct", {})
            sets = [correct.get("id", {}), *correct.get("shifts", {}).values(), *correct.get("probes", {}).values()]
            images = sum(s.get("n", 0) for s in sets if isinstance(s, dict))
            adapt += cost.get("adapt_seconds") or 0.0
            evaluate += images / cost["eval_images_per_second"] if cost.get("eval_images_per_second") else 0.0
            cells += 1
    if not cells:
        return None
    return (f"the committed board ({cells:.0f} cells): {adapt / 60:.0f} min adapting and {evaluate / 60:.0f} min "
            f"evaluating as recorded, about {(adapt + evaluate) / 60 / workers:.0f} min on {workers} workers")
