"""The progress reporter: stages inside stages (a method encoding its support set while adapting)."""

import io
import json

from rich.console import Console

from clipbench.ui import RichReporter


def test_a_stage_started_inside_another_keeps_both_bars_until_they_finish():
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with RichReporter(console) as reporter:
        adapt = reporter.stage("adapt", 3)
        adapt(1, 3)
        encode = reporter.stage("encode support", 10)
        encode(10, 10)
        adapt(2, 3)  # the outer stage still reports after the inner one finished
        assert len(reporter.progress.tasks) == 2
        adapt(3, 3)
        reporter.stage("eval", 5)
        assert [t.description for t in reporter.progress.tasks] == ["eval"]


def test_a_batch_log_gets_one_line_per_cell_with_an_eta(registry, tmp_path):
    import io

    from rich.console import Console

    from clipbench import runner
    from clipbench.ui import RichReporter

    pm, reg = registry
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with RichReporter(console, enabled=False) as reporter:
        runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2], out_dir=tmp_path),
                       reg, pm, reporter)
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("cell ")]
    assert len(lines) == 2
    import re

    assert lines[0].startswith("cell 1/2 counting shape seed 1: ID ")
    assert re.search(r"; elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$", lines[0])  # the ETA's value: see below
    assert "mean shift" in lines[0] and "mean probe" in lines[0]


class _Ticks:
    """A clock that moves ``step`` seconds at every reading: each cell, read at its start and its end,
    takes exactly ``step`` seconds, whatever this machine's speed."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _batch_log(reg, pm, out, seeds, clock=None, **request) -> list[str]:
    import io

    from rich.console import Console

    from clipbench import runner
    from clipbench.ui import RichReporter

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=300)
    with RichReporter(console, enabled=False, **({"clock": clock} if clock else {})) as reporter:
        runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=seeds, out_dir=out, **request),
                       reg, pm, reporter)
    return buf.getvalue().splitlines()


def test_a_batch_log_says_the_plan_before_any_work_then_the_reference_then_the_cells(registry, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(tmp_path / "cold-cache"))
    pm, reg = registry
    lines = _batch_log(reg, pm, tmp_path / "out", [1, 2])
    assert lines[0] == ("clipbench run: counting on suite mini: 1 task x 2 seeds = 2 cells (tasks shape; seeds 1,2); "
                        "model random-tiny on cpu; loading the model")
    [result] = list((tmp_path / "out").glob("mini__counting__*.json"))
    assert lines[1] == f"results: {result}"
    assert lines[2] == "cells: 2 to run"
    assert lines[3] == "hyper-parameters: counting: its defaults (it declares nothing to tune)"
    assert lines[4].startswith("zero-shot reference: 1 task to score first") \
        and "embedding cache cold (0 of 3 test sets cached in" in lines[4]
    assert lines[5] == "ETA: after the first cell (no recorded cost of these cells)"
    assert lines[6].startswith("zero-shot reference 1/1: shape scored in ")
    assert lines[7].startswith("cell 1/2 counting shape seed 1: ") and lines[8].startswith("cell 2/2 ")
    assert len(lines) == 9

    # again with two more seeds: resumed, the reference stored, the cache warm, an ETA from the recorded cells
    lines = _batch_log(reg, pm, tmp_path / "out", [1, 2, 3, 4], clock=_Ticks(5.0))
    assert lines[2] == "cells: 2 to run, 2 already done (resumed)"
    assert lines[4] == (f"zero-shot reference: stored with the results; embedding cache warm (3 of 3 test sets "
                        f"cached in {tmp_path / 'cold-cache'})")
    assert lines[5].startswith("ETA of the cells: about 0:00:0") \
        and f"at the speed recorded in {tmp_path / 'out'}; rescaled" in lines[5]
    # each cell takes 5 s on the (fake) clock: after the first, the one left is 5 s away, reference excluded
    assert lines[6].startswith("cell 3/4 counting shape seed 3: ")
    assert lines[6].endswith(", cell 0:00:05; elapsed 0:00:10, ETA 0:00:05")
    assert lines[7].endswith("ETA 0:00:00")


def test_the_eta_after_one_cell_weighs_the_cells_left_by_their_recorded_costs():
    """The committed board records what each task costs SAFT; on a machine 1.8x slower, with +-15% noise per
    cell and a three-minute zero-shot reference, the ETA after one cell is within 30% of the truth, where
    extrapolating from the time to the first cell (the reference included) was not."""
    from pathlib import Path

    from clipbench.outline import Outline
    from clipbench.ui import Eta, recorded_costs

    board = Path(__file__).resolve().parent.parent / "leaderboards" / "results"
    tasks = ["shape", "colour", "clothing", "digits", "animals"]
    pending = [("saft", t, s) for t in tasks for s in (1, 2, 3)]
    o = Outline("default", ["saft"], tasks, [1, 2, 3], "clipbench-tiny", "cpu", board, 15, pending=pending,
                model_fingerprint="f8aadfabf412419d")
    recorded, sources = recorded_costs(o)
    assert set(recorded) == {("saft", t) for t in tasks} and sources
    noise = [1.15, 0.85, 1.1, 0.9, 1.0, 1.15, 0.85, 0.9, 1.1, 1.05, 0.95, 1.15, 0.85, 1.0, 1.1]
    actual = [1.8 * recorded[(m, t)] * k for (m, t, _), k in zip(pending, noise)]
    eta = Eta(pending, recorded)
    eta.finished(*pending[0], actual[0])
    truth = sum(actual[1:])
    assert abs(eta.seconds() - truth) / truth < 0.3
    reference = 180.0
    naive = (reference + actual[0]) / 1 * 14  # the old ETA: elapsed time (reference included) per cell
    assert abs(naive - truth) / truth > 0.3


def test_eta_falls_back_to_measured_cells_where_nothing_was_recorded():
    from clipbench.ui import Eta

    pending = [("a", "x", 1), ("a", "y", 1), ("b", "x", 1)]
    eta = Eta(pending, {("a", "x"): 10.0, ("a", "y"): 30.0})
    assert eta.seconds() is None  # b has no record, and nothing has run yet to stand in for it
    eta.finished("a", "x", 1, 20.0)  # this machine: twice the recorded time
    assert eta.seconds() == 2 * 30.0 + 20.0  # a/y scaled; b counted as the mean measured cell
    eta.finished("a", "y", 1, 60.0)
    eta.finished("b", "x", 1, 7.0)
    assert eta.seconds() == 0.0


def test_a_local_sweeps_eta_shares_the_cells_between_its_workers_and_times_cells_by_what_they_recorded():
    """Workers send no cell_started, so a finished cell's time is the one it recorded (adapt + evaluation, under
    the same load); with two cells at once the cells left take half their summed time."""
    from clipbench.ui import Eta

    console = Console(file=io.StringIO(), width=200)
    reporter = RichReporter(console, enabled=False, log_cells=True)
    pending = [("a", "x", 1), ("a", "x", 2), ("a", "x", 3), ("a", "x", 4)]
    reporter.eta = Eta(pending, {("a", "x"): 10.0})
    reporter.parallel(2)
    assert console.file.getvalue().splitlines()[-1] == "2 cells at once: ETA of the cells about 0:00:20"
    cell = {"task": "x", "seed": 1, "id": 50.0, "shifts": {}, "probes": {},
            "cost": {"adapt_seconds": 20.0}}
    reporter.cell_finished(1, 4, "a", cell)  # this cell recorded 20 s: twice the record
    assert console.file.getvalue().splitlines()[-1].endswith("ETA 0:00:30")  # 3 cells x 20 s / 2 workers


def test_the_suite_table_of_a_base_to_new_run_shows_new_classes_and_their_harmonic_mean(registry, tmp_path):
    """#26: a default-b2n run's summary names what ID means and shows new-class accuracy and CoCoOp's H."""
    from rich.console import Console

    from clipbench import runner, scoring, ui

    pm, reg = registry
    [split] = runner.execute(runner.RunRequest(["counting"], suite="mini-split", shots=2, seeds=[1],
                                               out_dir=tmp_path / "split"), reg, pm)
    [plain] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1],
                                               out_dir=tmp_path / "plain"), reg, pm)

    def render(path):
        console = Console(width=250, record=True)
        console.print(ui.comparison_table([json.loads(path.read_text())]))
        return console.export_text()

    text = render(split)
    header = next(line for line in text.splitlines() if "method" in line)
    assert " new " in header and " H " in header and "ID: base classes" in text
    hm = scoring.summarise(*(lambda d: (d["cells"], d["reference"]))(json.loads(split.read_text())))["overall"]
    assert f"{hm['base_new_hm']['mean']:.1f}" in text
    plain_header = next(line for line in render(plain).splitlines() if "method" in line)
    assert " new " not in plain_header and " H " not in plain_header
