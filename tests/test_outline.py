"""What a run says before the work: here, where each method's hyper-parameters come from."""

from types import SimpleNamespace

from clipbench.outline import hyper_source
from clipbench.plugins import collect, get_plugin_manager

REG = collect(get_plugin_manager(load_entrypoints=False))
TASKS = ["shape", "colour"]


def _say(method, tuned=None, shipped=True, **request):
    tuned = tuned or {}
    prov = {"tasks": {t: {"shipped": shipped} for t in tuned}} if tuned else None
    run = SimpleNamespace(method=REG.method(method), tuned=tuned, tuning_provenance=prov)
    req = SimpleNamespace(**{"tuned": None, "defaults": False, "options": {}, **request})
    return hyper_source(run, req, TASKS)


def test_a_method_without_a_finished_tuning_says_it_runs_the_papers_defaults_and_how_to_tune():
    """A tuned file of an older search space or recipe is skipped, so the run falls back to the paper's values: that is
    said before the work, with the command that fixes it."""
    said = _say("saft", tuned={"shape": {"lr": 1e-3}})
    assert said.startswith("saft: the paper's defaults on colour, tuned on 1 of 2 tasks")
    assert "`clipbench tune --method saft`" in said
    assert "the paper's defaults on shape, colour, tuned on 0 of 2" in _say("saft")
    run = SimpleNamespace(method=REG.method("saft"), tuned={}, tuning_provenance=None)
    request = SimpleNamespace(tuned=None, defaults=False, options={})
    assert "`clipbench tune --method saft --suite default-b2n`" in hyper_source(run, request, TASKS, "default-b2n")


def test_where_the_values_come_from_otherwise():
    both = {"shape": {"lr": 1e-3}, "colour": {"lr": 1e-2}}
    assert _say("saft", tuned=both) == "saft: tuned on every task (shipped with clipbench)"
    assert _say("saft", tuned=both, shipped=False) == "saft: tuned on every task (your tuned configs)"
    assert _say("saft", defaults=True) == "saft: the paper's defaults (--defaults)"
    rerun = SimpleNamespace(method=REG.method("saft"), tuned={}, tuning_provenance=None)
    request = SimpleNamespace(tuned={"shape": {"lr": 1e-3}}, defaults=False, options={})
    assert hyper_source(rerun, request, TASKS) == "saft: the values the re-run result recorded"
    assert _say("zeroshot") == "zeroshot: its defaults (it declares nothing to tune)"
    assert _say("saft", options={"saft": {"lr": 1e-3}}).endswith("as set with --option")
