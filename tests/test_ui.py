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
