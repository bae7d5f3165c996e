"""The public API: what a plugin imports from the top-level package, and nothing it should not need; and
running the benchmark from Python (clipbench.evaluate, evaluate_many, load)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import clipbench

ROOT = Path(__file__).resolve().parent.parent


def test_every_exported_name_resolves():
    for name in clipbench.__all__:
        assert getattr(clipbench, name) is not None, name
    assert set(dir(clipbench)) >= set(clipbench.__all__)


def test_importing_clipbench_stays_light():
    """`clipbench --help` must not pay for torch: the exports are imported on first use."""
    out = subprocess.run([sys.executable, "-c", "import sys, clipbench; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _clipbench_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clipbench":
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "clipbench"]
    return out


def test_the_example_plugin_and_contributing_import_only_the_public_api():
    for path in (ROOT / "plugins").glob("*/*/*.py"):
        assert set(_clipbench_imports(path)) <= {"clipbench"}, path
    text = (ROOT / "CONTRIBUTING.md").read_text()
    example = text.split("```python", 1)[1].split("```", 1)[0]
    assert "from clipbench import" in example and "from clipbench." not in example


def test_a_config_base_turns_a_recipe_into_the_schedule():
    from clipbench.config import AdamWRecipe, SGDRecipe
    from clipbench.training import Schedule

    assert AdamWRecipe().schedule() == Schedule("adamw", 1e-5, 0.1, batch_size=32, epochs=20, warmup_fraction=0.1)
    assert SGDRecipe().schedule() == Schedule("sgd", 1e-6, 1e-4, 0.9, 128, 30, warmup_fraction=0.0, decay="constant")
    assert AdamWRecipe(lr=3e-5).schedule(weight_decay=0.0).weight_decay == 0.0
    described = {d["name"]: d for d in AdamWRecipe.describe()}
    assert described["lr"]["search"] and described["lr"]["source"] == "FLYP: 1e-5"


# ---------------------------------------------------------------- running the benchmark from Python


def _readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_readme_notebook_example_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("pandas")  # a dev extra: installed by the README's test command
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 6 and "clipbench.evaluate(" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    run, frame, same = scope["run"], scope["frame"], scope["same"]
    assert run.path.resolve().parent == (tmp_path / "results").resolve() and run.path.is_file()
    assert run.summary == same.summary and run.summary["overall"]["score"]["mean"] == run.score
    lo, hi = run.interval()
    assert lo <= run.score <= hi
    assert list(frame["level"]) == ["task"] and frame["score"].iloc[0] == run.summary["tasks"]["clothing"]["score"]["mean"]


def test_evaluate_is_the_runner_with_its_files_and_resumes(fake_plugin, tmp_path):
    from clipbench import runner, scoring
    from clipbench.plugins import collect, get_plugin_manager
    from tests.fakes import CountingMethod

    run = clipbench.evaluate(method="counting", suite="mini", seeds=[1, 2], shots=2, out_dir=tmp_path / "api",
                             plugins=[fake_plugin], progress=False)
    assert len(CountingMethod.calls) == 2 and sorted(c["seed"] for c in run.cells) == [1, 2]
    assert run.summary == scoring.summarise(run.cells, run.reference)
    # the CLI's runner with the same request writes the same file, and finds nothing left to do
    pm = get_plugin_manager(extra=[fake_plugin])
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2],
                                              out_dir=tmp_path / "api"), collect(pm), pm)
    assert path == run.path and len(CountingMethod.calls) == 2
    again = clipbench.evaluate(method="counting", suite="mini", seeds=[1, 2, 3], shots=2,
                               out_dir=tmp_path / "api", plugins=[fake_plugin], progress=False)
    assert len(CountingMethod.calls) == 3 and again.path == run.path  # only seed 3 was computed
    assert clipbench.load(run.path).cells == again.cells


def test_without_out_dir_nothing_is_left_behind(fake_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = clipbench.evaluate(method="counting", suite="mini", seeds=[1], shots=2, plugins=[fake_plugin],
                             progress=False)
    assert run.path is None and len(run.cells) == 1 and list(tmp_path.iterdir()) == []


def test_several_methods_and_their_frames(fake_plugin, tmp_path, capsys):
    runs = clipbench.evaluate_many(["counting", "zeroshot"], suite="mini", seeds=[1, 2], shots=2,
                                   out_dir=tmp_path, plugins=[fake_plugin])
    out = capsys.readouterr().out
    assert "clipbench run: counting, zeroshot on suite mini: 2 methods x 1 task x 2 seeds = 4 cells" in out
    assert [r.method for r in runs] == ["counting", "zeroshot"] and runs["zeroshot"] is runs[1]
    assert set(runs.summary) == {"counting", "zeroshot"} and {c["method"] for c in runs.cells} == {"counting", "zeroshot"}
    assert isinstance(clipbench.load(tmp_path), clipbench.Results) and len(clipbench.load(tmp_path)) == 2
    pd = pytest.importorskip("pandas")
    frame = runs.to_pandas(level="run")
    assert isinstance(frame, pd.DataFrame) and list(frame["method"]) == ["counting", "zeroshot"]
    assert list(runs.to_pandas()["level"]) == ["cell"] * 4


def test_to_pandas_without_pandas_is_one_sentence(fake_plugin, tmp_path, monkeypatch):
    import builtins

    run = clipbench.evaluate(method="counting", suite="mini", seeds=[1], shots=2, plugins=[fake_plugin],
                             progress=False)
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(clipbench.api.ClipbenchError, match=r"^to_pandas\(\) needs pandas, which is not installed"):
        run.to_pandas()


def _quiet(**kwargs):
    return dict(suite="mini", progress=False, **kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda p: clipbench.evaluate(method=["counting", "zeroshot"], plugins=[p], **_quiet()), "evaluate_many"),
    (lambda p: clipbench.evaluate(method="counting", seeds=3, plugins=[p], **_quiet()), "seeds is a list of seeds"),
    (lambda p: clipbench.evaluate(method="counting", options=["lr", 1], plugins=[p], **_quiet()),
     "options maps option names"),
    (lambda p: clipbench.evaluate(method="countnig", plugins=[p], **_quiet()), "Unknown method 'countnig'"),
    (lambda p: clipbench.evaluate(method="counting", tasks=["shpae"], plugins=[p], **_quiet()), "shpae"),
    (lambda p: clipbench.evaluate(method="counting", shots=0, plugins=[p], **_quiet()), "shots is a whole number"),
    (lambda p: clipbench.evaluate(method="counting", options={"bump": "high"}, plugins=[p], **_quiet()),
     "counting.bump"),
    (lambda p: clipbench.evaluate_many("counting", plugins=[p], **_quiet()), "methods is a non-empty list"),
    (lambda p: clipbench.load("missing.json"), "Result file not found"),
])
def test_bad_input_is_one_sentence_before_any_work(fake_plugin, tmp_path, monkeypatch, call, message):
    from clipbench.errors import ClipbenchError
    from tests.fakes import CountingMethod

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClipbenchError, match=message) as caught:
        call(fake_plugin)
    assert "\n" not in str(caught.value) and CountingMethod.calls == [] and list(tmp_path.iterdir()) == []
