"""plugins/clipbench-mlflow, installed and found through its entry point, logs a run to a local MLflow store."""

import json

import pytest

from clipbench import runner, scoring
from clipbench.plugins import collect, get_plugin_manager
from tests.fakes import CountingMethod, FakePlugin


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    try:
        import clipbench_mlflow  # noqa: F401
    except ImportError:
        pytest.fail("install the tracker plugin: pip install -e plugins/clipbench-mlflow (README's test command)")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for opt-in use
    monkeypatch.setenv("CLIPBENCH_MLFLOW_EXPERIMENT", "tests")
    monkeypatch.delenv("CLIPBENCH_LOAD_PLUGINS", raising=False)
    import clipbench_mlflow

    monkeypatch.setattr(clipbench_mlflow, "TRACKER", clipbench_mlflow.Tracker())
    from mlflow.tracking import MlflowClient

    return MlflowClient(store.as_uri())


def _runs(client):
    experiment = client.get_experiment_by_name("tests")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_a_run_is_logged_with_params_losses_cells_scores_and_the_result_file(mlflow_store, tmp_path):
    pm = get_plugin_manager(extra=[FakePlugin()])
    assert any(name == "mlflow" for name, _ in pm.list_name_plugin()), "not found through its entry point"
    [path] = runner.execute(runner.RunRequest(["full-ft"], suite="mini", shots=2, seeds=[1, 2], out_dir=tmp_path,
                                              options={"full-ft": {"epochs": "2"}}), collect(pm), pm)
    [run] = _runs(mlflow_store)
    result = json.loads(path.read_text())
    assert run.info.status == "FINISHED"
    from clipbench import run_id

    assert run.data.params["method"] == "full-ft" and run.data.params["run_id"] == run_id(result)
    assert run.data.tags["clipbench.config_hash"] == result["config_hash"]
    assert run.data.params["option.epochs"] == "2"
    losses = mlflow_store.get_metric_history(run.info.run_id, "shape/seed1/loss")
    assert [m.step for m in losses] == [1, 2] and all(m.value > 0 for m in losses)
    cell = next(c for c in result["cells"] if c["seed"] == 2)
    assert run.data.metrics["shape/seed2/id"] == cell["id"]
    assert run.data.metrics["shape/seed2/shift/outline"] == cell["shifts"]["outline"]
    assert run.data.metrics["suite/score"] == pytest.approx(scoring.summary_of(result)["overall"]["score"]["mean"])
    artifact = mlflow_store.download_artifacts(run.info.run_id, "result.json", str(tmp_path))
    assert json.loads(open(artifact).read())["cells"] == result["cells"]


def test_a_failed_run_is_marked_failed(mlflow_store, tmp_path, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("out of luck")

    monkeypatch.setattr(CountingMethod, "adapt", broken)
    pm = get_plugin_manager(extra=[FakePlugin()])
    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="out of luck"):  # a failing method is one sentence (issue 24)
        runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path),
                       collect(pm), pm)
    [run] = _runs(mlflow_store)
    assert run.info.status == "FAILED" and "out of luck" in run.data.tags["clipbench.error"]


def test_without_a_tracking_uri_it_logs_nothing_and_never_breaks_a_run(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    pm = get_plugin_manager(extra=[FakePlugin()])
    runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path),
                   collect(pm), pm)
    assert _runs(mlflow_store) == []


def test_an_unreachable_tracker_is_one_warning_not_a_failed_benchmark(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknown-scheme://nowhere")
    pm = get_plugin_manager(extra=[FakePlugin()])
    with pytest.warns(UserWarning, match="clipbench-mlflow stopped logging"):
        [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1], out_dir=tmp_path),
                                collect(pm), pm)
    assert path.is_file()
