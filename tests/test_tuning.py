"""Hyper-parameters chosen by the harness on validation data: same budget for all, test sets untouchable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest
import torch

from clipbench import hookimpl, leaderboard, results, runner, tuning
from clipbench.errors import ClipbenchError
from clipbench.method import Adapted, Method


def test_grids_widen_past_an_edge_and_report_it():
    space = {"lr": [1e-3, 1e-2, 1e-1]}
    record: dict = {}
    seen = []

    def trial(values):  # validation accuracy keeps rising with the learning rate
        seen.append(values["lr"])
        return 50.0 + 10 * torch.tensor(values["lr"]).log10().item()

    out = tuning.tune_task(None, space, record, trial, lambda: None, lambda *a: None)
    assert seen == [1e-3, 1e-2, 1e-1, 1.0, 10.0]  # the grid, then WIDEN_STEPS = 2 steps past its top edge
    assert out["values"] == {"lr": 10.0} and out["at_edge"] == ["lr"] and len(out["widened"]) == 2


def test_an_interior_optimum_is_not_widened():
    record: dict = {}
    out = tuning.tune_task(None, {"lr": [1e-3, 1e-2, 1e-1]}, record, lambda v: -abs(v["lr"] - 1e-2),
                           lambda: None, lambda *a: None)
    assert out["values"] == {"lr": 1e-2} and out["at_edge"] == [] and len(out["trials"]) == 3


def test_ties_go_to_the_earlier_grid_point():
    out = tuning.tune_task(None, {"lr": [1e-3, 1e-2, 1e-1]}, {}, lambda v: 80.0, lambda: None, lambda *a: None)
    assert out["values"] == {"lr": 1e-3}


def test_every_builtin_space_fits_the_same_budget():
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager(load_entrypoints=False))
    for method in reg.methods.values():
        space = tuning.search_space(method)
        tuning.check_space(method, space)
        assert len(tuning.grid(space)) <= tuning.TRIAL_BUDGET
    for name in ("full-ft", "aclip", "bitfit", "lora", "saft", "orthcr", "clip-adapter"):
        assert "lr" in tuning.search_space(reg.methods[name]), name
        assert reg.methods[name].config_class().lr in tuning.search_space(reg.methods[name])["lr"] or \
            name == "saft"  # SAFT's 5e-6 sits between the half-decade points 3e-6 and 1e-5


@dataclass(frozen=True)
class ScaleConfig:
    scale: float = field(default=1.0, metadata={"help": "multiplies the zero-shot logits of the own task",
                                                "search": [-1.0, 1.0, 2.0]})


class Scale(Method):
    """A third-party method with a search space: its validation accuracy depends on the tuned value."""

    name = "scale"
    citation = "clipbench test suite, a tunable fake method"
    config_class = ScaleConfig

    def adapt(self, model, fewshot, task, config, ctx):
        factor = config.scale

        class Scaled(Adapted):
            def logits_from_features(self, features, t):
                logits = super().logits_from_features(features, t)
                return factor * logits if self.is_own_task(t) else logits

        return Scaled(model, trainable=0, task=task)


class ScalePlugin:
    @hookimpl
    def clipbench_register_methods(self, register):
        register(Scale())


@pytest.fixture
def reg3(fake_plugin):
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False, extra=[fake_plugin, ScalePlugin()])
    return pm, collect(pm)


class Vandal(Scale):
    """Tunable, and changes the shared model it was never given (found through the few-shot sample's lookup)."""

    name = "vandal"

    def adapt(self, model, fewshot, task, config, ctx):
        shared = fewshot.features_from.__closure__[0].cell_contents.__self__._pretrained
        with torch.no_grad():
            shared.module.logit_scale.add_(1.0)
        return super().adapt(model, fewshot, task, config, ctx)


def test_a_method_that_changes_the_shared_model_while_tuned_is_refused(fake_plugin, tmp_path):
    from clipbench.plugins import collect, get_plugin_manager
    from clipbench.protocol import MethodError

    class VandalPlugin:
        @hookimpl
        def clipbench_register_methods(self, register):
            register(Vandal())

    pm = get_plugin_manager(load_entrypoints=False, extra=[fake_plugin, VandalPlugin()])
    with pytest.raises(MethodError, match="'vandal' changed the shared pretrained model while tuned on task 'shape'"):
        tuning.tune(tuning.TuneRequest(["vandal"], suite="mini", shots=2, out_dir=tmp_path / "tuned"), collect(pm), pm)


def _forbid_tests(suite):
    def boom():
        raise AssertionError("a test set was loaded during tuning")

    from clipbench.tasks import Lazy

    for task in suite.tasks.values():
        task.test = Lazy(boom)
        task.shifts = {k: Lazy(boom) for k in task.shifts}


def test_a_third_party_method_is_tuned_without_touching_a_test_set_and_ranked_as_tuned(reg3, tmp_path):
    pm, reg = reg3
    _forbid_tests(reg.suites["mini"])
    [path] = tuning.tune(tuning.TuneRequest(["scale"], suite="mini", shots=2, out_dir=tmp_path / "tuned"), reg, pm)
    record = json.loads(path.read_text())
    shape = record["tasks"]["shape"]
    assert len(shape["trials"]) == 3 + len(shape["widened"]) and shape["done"]
    assert record["seeds"] == list(tuning.TUNING_SEEDS) and record["budget"] == tuning.TRIAL_BUDGET
    # a negative scale inverts the ranking: the chosen value is the best on validation, never -1
    assert shape["values"]["scale"] > 0

    from clipbench.plugins import collect, get_plugin_manager
    from tests.fakes import FakePlugin

    pm = get_plugin_manager(load_entrypoints=False, extra=[FakePlugin(), ScalePlugin()])
    reg = collect(pm)  # fresh suites: evaluation may read the test sets
    [tuned] = runner.execute(runner.RunRequest(["scale"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path / "r",
                                               tuned_dir=tmp_path / "tuned"), reg, pm)
    [paper] = runner.execute(runner.RunRequest(["scale"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path / "r",
                                               tuned_dir=tmp_path / "tuned", defaults=True), reg, pm)
    t, d = results.load_result(tuned), results.load_result(paper)
    assert t["config"]["tuned"] == {"shape": shape["values"]} and d["config"]["tuned"] == {}
    assert t["provenance"]["tuning"]["seeds"] == list(tuning.TUNING_SEEDS)
    assert t["provenance"]["tuning"]["tasks"]["shape"]["trials"] == len(shape["trials"])
    page = leaderboard.render_suite("mini", [(tuned, t), (paper, d)])
    assert "| tuned " in page and "| paper " in page
    # a reviewer re-running the tuned row gets it back exactly, with the tuned values it records
    from clipbench import verify

    assert verify.verify(t, reg, pm, tolerance=0.0) == []
    forged = json.loads(json.dumps(t))
    forged["config"]["tuned"] = {"shape": {"scale": -1.0}}  # claims a value its cells were not made with
    assert verify.verify(forged, reg, pm) != []


def test_the_guarded_view_raises_on_every_test_set(default_suite):
    view = tuning.guarded(default_suite.task("shape"))
    with pytest.raises(ClipbenchError, match="touched the test set"):
        view.test.value
    with pytest.raises(ClipbenchError, match="touched the shift outline"):
        view.shifts["outline"].value
    assert view.probes == [] and len(view.train.value) > 0


def test_tuning_resumes_where_it_stopped(reg3, tmp_path, monkeypatch):
    pm, reg = reg3
    calls = []
    real = tuning.validation_accuracy

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the second trial's first seed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "validation_accuracy", flaky)
    request = tuning.TuneRequest(["scale"], suite="mini", shots=2, out_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(request, reg, pm)
    [path] = list(tmp_path.glob("*.json"))
    assert len(json.loads(path.read_text())["tasks"]["shape"]["trials"]) == 1
    calls.clear()
    monkeypatch.setattr(tuning, "validation_accuracy", real)
    counted = []
    monkeypatch.setattr(tuning, "validation_accuracy", lambda *a, **k: counted.append(1) or real(*a, **k))
    tuning.tune(request, reg, pm)
    trials = json.loads(path.read_text())["tasks"]["shape"]["trials"]
    assert len(counted) == 3 * (len(trials) - 1)  # the finished trial was not run again


def test_tuning_seeds_are_never_evaluation_seeds(registry, tmp_path):
    pm, reg = registry
    with pytest.raises(ClipbenchError, match="is one of the tuning seeds"):
        runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, tuning.TUNING_SEEDS[0]],
                                         out_dir=tmp_path), reg, pm)


def test_a_changed_search_space_makes_a_tuned_file_stale(reg3, tmp_path):
    pm, reg = reg3
    [path] = tuning.tune(tuning.TuneRequest(["scale"], suite="mini", shots=2, out_dir=tmp_path), reg, pm)
    key = tuning.TuneKey(**json.loads(path.read_text())["key"])
    assert tuning.load_tuned(key, [tmp_path])[0] == path
    changed = dataclasses.replace(key, space_hash=tuning.space_hash({"scale": [5.0, 6.0]}))
    assert tuning.load_tuned(changed, [tmp_path]) is None  # a run then uses the paper defaults, not stale values


def test_a_changed_recipe_makes_a_tuned_file_stale(registry, monkeypatch):
    """Values tuned under 20 epochs are not applied to a recipe of 5: the key holds the fixed defaults' hash."""
    pm, reg = registry
    method = reg.method("full-ft")
    key = tuning.tune_key("default", method, "f" * 16, 16)
    assert "lr" not in tuning.recipe(method) and tuning.recipe(method)["epochs"] == 20
    shorter = dataclasses.make_dataclass("Shorter", [("epochs", int, dataclasses.field(default=5))],
                                         bases=(method.config_class,), frozen=True)
    monkeypatch.setattr(method, "config_class", shorter)
    changed = tuning.tune_key("default", method, "f" * 16, 16)
    assert changed.space_hash == key.space_hash and changed.recipe_hash != key.recipe_hash


def test_widening_stays_inside_a_fields_bounds():
    out = tuning.tune_task(None, {"cut": [0.125, 0.5]}, {}, lambda v: v["cut"], lambda: None, lambda *a: None,
                           {"cut": (0.0, 1.0)})
    assert out["values"] == {"cut": 0.5} and out["widened"] == [] and out["at_edge"] == ["cut"]
    assert tuning.widen({"n": [1, 2]}, "n", 1) is None  # an integer grid does not widen to 0


# --- a damaged or wrong-typed tuned file is refused by name, never skipped (issue 24, cases 4 and 5) ------


def _tuned_file(folder, method, task_record=None, text=None):
    space = tuning.search_space(method)
    key = tuning.tune_key("default", method, "f" * 16, 16)
    record = tuning.new_record(key, space)
    record["tasks"]["shape"] = {"values": {"lr": 1e-5}, "val_accuracy": 50.0, "at_edge": [], "seconds": 1.0,
                                "done": True, "trials": [], **(task_record or {})}
    path = folder / key.filename()
    path.write_text(text if text is not None else json.dumps(record))
    return key, path


DAMAGED = {
    "lr a list": ({"values": {"lr": [1]}}, None, "lr wants a number, got [1]"),
    "lr negative": ({"values": {"lr": -1.0}}, None, "lr must be above 0, got -1.0"),
    "lr true": ({"values": {"lr": True}}, None, "lr wants a number, got True"),
    "unknown option": ({"values": {"rl": 1e-5}}, None, "full-ft has no option rl"),
    "values not an object": ({"values": [1e-5]}, None, "chosen values are not an object"),
    "accuracy a string": ({"val_accuracy": "high"}, None, "val_accuracy is missing or of the wrong type"),
    "truncated": (None, '{"schema": 1, "key": {"suite": "def', "is not valid JSON"),
    "not a record": (None, "[1, 2, 3]", "not a tuned-config record"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_tuned_file_is_refused_by_name(case, tmp_path, registry):
    pm, reg = registry
    method = reg.method("full-ft")
    task_record, text, says = DAMAGED[case]
    key, path = _tuned_file(tmp_path, method, task_record, text)
    with pytest.raises(ClipbenchError) as err:
        tuning.load_tuned(key, [tmp_path], method)
    message = str(err.value)
    assert str(path) in message and says in message and "run `clipbench tune` again" in message, message
    assert "\n" not in message


def test_a_damaged_shipped_tuned_file_says_to_reinstall(tmp_path, registry, monkeypatch):
    pm, reg = registry
    monkeypatch.setattr(tuning, "SHIPPED", tmp_path)
    key, path = _tuned_file(tmp_path, reg.method("full-ft"), text='{"schema"')
    with pytest.raises(ClipbenchError, match="reinstall clipbench"):
        tuning.load_tuned(key, [tmp_path], reg.method("full-ft"))


def test_a_run_refuses_a_damaged_tuned_file_instead_of_quietly_using_other_values(tmp_path, registry):
    pm, reg = registry
    method = reg.method("full-ft")
    suite = reg.suite("default")
    _tuned_file(tmp_path, method, {"values": {"lr": -1.0}})
    request = runner.RunRequest(["full-ft"], tuned_dir=tmp_path)
    with pytest.raises(ClipbenchError, match="is damaged .*lr must be above 0"):
        runner.tuned_values(request, suite, suite.selected(["shape"]), method, "f" * 16)
    good = tmp_path / "good"
    good.mkdir()
    _tuned_file(good, method, {"values": {"lr": 3e-5}})
    values, _ = runner.tuned_values(runner.RunRequest(["full-ft"], tuned_dir=good), suite, suite.selected(["shape"]),
                                    method, "f" * 16)
    assert values == {"shape": {"lr": 3e-5}}


def test_two_tune_shards_on_one_folder_keep_both_tasks(tmp_path, registry):
    """Two `tune --task` processes on one --out: each saves its own record; the file keeps both tasks."""
    pm, reg = registry
    method = reg.method("full-ft")
    key, path = _tuned_file(tmp_path, method)
    path.unlink()
    done = {"values": {"lr": 1e-5}, "val_accuracy": 50.0, "at_edge": [], "seconds": 1.0, "done": True, "trials": []}
    first, second = (tuning.new_record(key, tuning.search_space(method)) for _ in range(2))
    first["tasks"]["shape"] = dict(done)
    second["tasks"]["colour"] = dict(done, values={"lr": 3e-5})
    tuning.write_record(path, first)
    tuning.write_record(path, second)  # this process never saw shape: it re-reads before saving
    tuning.write_record(path, first)
    assert sorted(json.loads(path.read_text())["tasks"]) == ["colour", "shape"]
    assert tuning.load_tuned(key, [tmp_path], method)[1]["tasks"]["colour"]["values"] == {"lr": 3e-5}


def test_a_full_disk_during_tune_is_one_sentence(tmp_path, registry, monkeypatch):
    import errno

    pm, reg = registry
    method = reg.method("full-ft")
    key = tuning.TuneKey("default", "full-ft", "f" * 16, 16, "x", "y")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "write_atomic", full)
    path = tmp_path / key.filename()
    with pytest.raises(ClipbenchError) as err:
        tuning.write_record(path, tuning.new_record(key, {}))
    message = str(err.value)
    assert str(path) in message and "No space left on device" in message and "Free space" in message


def test_progress_numbers_each_trial_and_marks_the_ones_read_back_from_an_interrupted_tuning():
    said = []
    record = {"trials": [{"values": {"lr": 1e-3}, "val_accuracy": 10.0, "seconds": 1.0},
                         {"values": {"lr": 1e-2}, "val_accuracy": 20.0, "seconds": 1.0}]}
    tuning.tune_task(None, {"lr": [1e-3, 1e-2, 1e-1]}, record, lambda v: -abs(v["lr"] - 1e-2), lambda: None,
                     lambda number, total, trial, recorded: said.append((number, total, trial["values"]["lr"], recorded)))
    assert said[:3] == [(1, 3, 1e-3, True), (2, 3, 1e-2, True), (3, 3, 1e-1, False)]


def test_every_shipped_tuned_file_matches_its_methods_grid_and_recipe(registry):
    """A default changed without a re-tune would make `run` fall back to the paper defaults; this says which."""
    pm, reg = registry
    shipped = sorted(tuning.SHIPPED.glob("*.json"))
    assert shipped
    for path in shipped:
        key = json.loads(path.read_text())["key"]
        method = reg.method(key["method"])
        want = tuning.tune_key(key["suite"], method, key["model_fingerprint"], key["shots"])
        assert key == dataclasses.asdict(want), f"{path.name}: re-run `clipbench tune` for {method.name}"
