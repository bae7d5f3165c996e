"""The progress reporter: stages inside stages (a method encoding its support set while adapting)."""

import io

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
    assert lines[0].startswith("cell 1/2 counting shape seed 1: ID ") and "ETA 0:00:0" in lines[0]
    assert "mean shift" in lines[0] and "mean probe" in lines[0]
