import inspect
from importlib import metadata

import pytest

from clipbench import hookspecs
from clipbench.errors import ClipbenchError
from clipbench.plugins import DEFAULT_PLUGINS, collect, get_plugin_manager

BUILTIN_METHODS = {"zeroshot", "linear-probe", "full-ft"}


def test_builtins_register_through_the_hooks():
    reg = collect(get_plugin_manager(load_entrypoints=False))
    assert BUILTIN_METHODS <= set(reg.methods)
    assert "default" in reg.suites
    assert "clipbench-tiny" in reg.models
    assert all(reg.owners[("method", m)] == "built-in" for m in BUILTIN_METHODS)


def test_a_plugin_object_adds_method_suite_and_model(registry):
    pm, reg = registry
    assert "counting" in reg.methods and "mini" in reg.suites and "random-tiny" in reg.models


def test_duplicate_names_are_refused_with_both_owners(fake_plugin):
    from tests.fakes import FakePlugin

    pm = get_plugin_manager(load_entrypoints=False, extra=[fake_plugin, FakePlugin()])
    with pytest.raises(ClipbenchError, match="Two plugins register the method 'counting'"):
        collect(pm)


def test_unknown_method_suggests_the_closest(registry):
    _, reg = registry
    with pytest.raises(ClipbenchError, match=r"Unknown method 'ful-ft'\. Did you mean: full-ft\? Known methods:"):
        reg.method("ful-ft")


def test_misspelt_hook_fails_loudly():
    from clipbench import hookimpl

    class Typo:
        @hookimpl
        def clipbench_register_method(self, register):  # missing "s"
            pass

    with pytest.raises(Exception, match="unknown hook"):
        get_plugin_manager(load_entrypoints=False, extra=[Typo()])


class _FakeDist:
    project_name = "clipbench-fake"
    metadata = {"name": "clipbench-fake"}
    version = "1.0"


def _fake_entry_point(monkeypatch, module_name, plugin_module):
    """Install a fake distribution exposing ``plugin_module`` in group `clipbench`."""
    import sys

    sys.modules[module_name] = plugin_module
    ep = metadata.EntryPoint(name="fake", value=module_name, group="clipbench")

    class Dist:
        metadata = {"name": "clipbench-fake"}
        version = "1.0"
        entry_points = [ep]

        @property
        def name(self):
            return "clipbench-fake"

    monkeypatch.setattr(metadata, "distributions", lambda **kw: [Dist()])


def test_entry_point_plugins_are_discovered_and_can_be_blocked(monkeypatch, fake_plugin):
    import types

    module = types.ModuleType("clipbench_fake_plugin")
    module.clipbench_register_methods = fake_plugin.clipbench_register_methods
    _fake_entry_point(monkeypatch, "clipbench_fake_plugin", module)
    reg = collect(get_plugin_manager())
    assert "counting" in reg.methods
    assert reg.owners[("method", "counting")] == "clipbench-fake"

    monkeypatch.setenv("CLIPBENCH_LOAD_PLUGINS", "")
    assert "counting" not in collect(get_plugin_manager()).methods
    monkeypatch.setenv("CLIPBENCH_LOAD_PLUGINS", "fake")
    assert "counting" in collect(get_plugin_manager()).methods


def _hooks_implemented_in_tests() -> set[str]:
    """Hook names defined as functions (hook implementations) inside test_* functions of tests/*.py:
    a test that implements the hook, not a mention in a comment or a string."""
    import ast
    from pathlib import Path

    found = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found |= {n.name for n in ast.walk(node) if isinstance(n, ast.FunctionDef)
                          and n.name.startswith("clipbench_")}
    return found


def test_every_hookspec_is_documented_and_implemented_by_a_test():
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("clipbench_")]
    assert len(specs) >= 8
    tested = _hooks_implemented_in_tests()
    for name in specs:
        assert len(inspect.getdoc(getattr(hookspecs, name)) or "") > 60, f"{name} needs a docstring"
        assert name in tested, f"no test implements the hook {name}"


def test_registration_goes_through_pluggy_with_wrappers_and_ordering(fake_plugin):
    from clipbench import hookimpl

    calls = []

    class Ordered:
        @hookimpl(wrapper=True)
        def clipbench_register_methods(self, register):
            calls.append("wrapper before")
            result = yield
            calls.append("wrapper after")
            return result

        @hookimpl(tryfirst=True)
        def clipbench_register_suites(self, register):
            calls.append("suites first")

        @hookimpl
        def clipbench_register_models(self, register):
            register("tagged-model", lambda **kw: None, "a model with tags", tags=["a", "b"], available=False)

    pm = get_plugin_manager(load_entrypoints=False, extra=[fake_plugin, Ordered()])
    reg = collect(pm)
    assert calls[:2] == ["wrapper before", "wrapper after"] and "suites first" in calls
    assert "counting" in reg.methods  # the wrapped hook still reached every implementation
    src = reg.models["tagged-model"]
    assert src.tags == ("a", "b") and src.available is False and src.plugin != "built-in"


def test_reporting_hooks_see_every_event_as_read_only_records(registry, tmp_path):
    import json

    from clipbench import hookimpl, runner

    seen = []

    class Tracker:
        @hookimpl
        def clipbench_run_started(self, run):
            seen.append(("started", run["config"]["method"]))
            with pytest.raises(TypeError):
                run["config"]["method"] = "forged"
            json.dumps(run)

        @hookimpl
        def clipbench_epoch_finished(self, run, task, seed, epoch, epochs, loss):
            seen.append(("epoch", task, seed, epoch, epochs))
            assert loss > 0

        @hookimpl
        def clipbench_cell_finished(self, run, cell):
            seen.append(("cell", cell["task"], cell["seed"]))
            with pytest.raises(TypeError):
                cell["id"] = 100.0

        @hookimpl
        def clipbench_run_finished(self, run, summary):
            seen.append(("finished", sorted(summary["tasks"])))

    pm, reg = registry
    pm.register(Tracker())
    runner.execute(runner.RunRequest(["full-ft"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path,
                                     options={"full-ft": {"epochs": "2"}}), reg, pm)
    assert seen == [("started", "full-ft"), ("epoch", "shape", 1, 1, 2), ("epoch", "shape", 1, 2, 2),
                    ("cell", "shape", 1), ("finished", ["shape"])]


def test_a_failing_run_is_reported_before_the_error_reaches_the_user(registry, tmp_path, monkeypatch):
    from clipbench import hookimpl, runner
    from tests.fakes import CountingMethod

    failures = []

    class Tracker:
        @hookimpl
        def clipbench_run_failed(self, run, error):
            failures.append((run["config"]["method"], error))

    def broken(self, *args):
        raise RuntimeError("the method broke\nsecond line")

    monkeypatch.setattr(CountingMethod, "adapt", broken)
    pm, reg = registry
    pm.register(Tracker())
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="Method 'counting' failed .*the method broke"):  # one sentence (#24)
        runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path), reg, pm)
    [(method, error)] = failures
    assert method == "counting" and "the method broke" in error and "second line" not in error


def test_default_plugins_are_modules_with_hooks():
    import importlib

    for name in DEFAULT_PLUGINS:
        module = importlib.import_module(name)
        assert any(n.startswith("clipbench_") for n in dir(module)), name


@pytest.mark.parametrize("kind, name", [("method", "../x"), ("method", "a b"), ("suite", "[/b]"),
                                        ("model", "x|<script>"),
                                        ("method", "zeroshot\n"), ("model", "clipbench-tiny\n")])  # fullmatch
def test_plugins_may_register_only_safe_names(kind, name):
    from clipbench import hookimpl
    from clipbench.errors import ClipbenchError
    from tests.fakes import CountingMethod, mini_suite

    class Unsafe:
        @hookimpl
        def clipbench_register_methods(self, register):
            if kind == "method":
                register(type("M", (CountingMethod,), {"name": name})())

        @hookimpl
        def clipbench_register_suites(self, register):
            if kind == "suite":
                register(mini_suite(name))

        @hookimpl
        def clipbench_register_models(self, register):
            if kind == "model":
                register(name, lambda **kw: None, "unsafe")

    with pytest.raises(ClipbenchError, match="names are letters, digits"):
        collect(get_plugin_manager(load_entrypoints=False, extra=[Unsafe()]))
