import json

import pytest

from clipbench import leaderboard, results, runner, scoring
from clipbench.errors import ClipbenchError
from tests.fakes import CountingMethod


def request(tmp_path, **kw):
    base = dict(methods=["counting"], suite="mini", shots=2, seeds=[1, 2], out_dir=tmp_path)
    base.update(kw)
    return runner.RunRequest(**base)


def test_result_file_round_trip_and_provenance(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(request(tmp_path), reg, pm)
    data = results.load_result(path)
    assert data["schema"] == results.SCHEMA
    assert data["config_hash"] == results.config_hash(data["config"])
    from clipbench.store import run_key

    assert path.name.endswith(results.config_hash(run_key(data["config"])) + ".json")  # the run, not its seeds
    prov = data["provenance"]
    for key in ("model_fingerprint", "data", "versions", "device", "method_citation"):
        assert prov[key], key
    assert {"shape/train", "shape/test", "shape/outline", "size/test"} <= set(prov["data"])
    assert [(c["task"], c["seed"]) for c in data["cells"]] == [("shape", 1), ("shape", 2)]
    cell = data["cells"][0]
    assert set(cell["shifts"]) == {"outline"} and set(cell["probes"]) == {"size"}
    # zero-shot adaptation reproduces the zero-shot reference exactly
    assert cell["id"] == data["reference"]["shape"]["id"]
    summary = scoring.summary_of(data)["tasks"]["shape"]
    assert summary["forgetting"]["size"]["mean"] == 0.0
    assert summary["seeds"] == [1, 2]


def test_interrupted_run_resumes_from_done_cells(registry, tmp_path, monkeypatch):
    pm, reg = registry
    real = runner.protocol.run_cell
    calls = {"n": 0}

    def crash_on_second(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(runner.protocol, "run_cell", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(request(tmp_path, seeds=[1, 2, 3]), reg, pm)
    [path] = list(tmp_path.glob("*.json"))
    assert len(results.load_result(path)["cells"]) == 1  # the finished cell survived
    monkeypatch.setattr(runner.protocol, "run_cell", real)
    CountingMethod.calls = []
    runner.execute(request(tmp_path, seeds=[1, 2, 3]), reg, pm)
    assert [c[1] for c in CountingMethod.calls] == [2, 3]  # seed 1 was not redone
    assert len(results.load_result(path)["cells"]) == 3


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "r.json"
    results.write_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        results.write_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"schema": "other/9"}', "schema is 'other/9'"),
    ("[]", "top level is not an object"),
])
def test_corrupt_result_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ClipbenchError, match=message) as err:
        results.load_result(path)
    assert str(path) in str(err.value)


def test_tampered_config_is_detected(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(request(tmp_path, seeds=[1]), reg, pm)
    data = json.loads(path.read_text())
    data["config"]["shots"] = 16
    path.write_text(json.dumps(data))
    with pytest.raises(ClipbenchError, match="config_hash does not match"):
        results.load_result(path)


def test_base_to_new_adapts_on_base_classes_only(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(request(tmp_path, suite="mini-split", seeds=[1]), reg, pm)
    data = results.load_result(path)
    assert CountingMethod.calls == [("shape[base]", 1, 3 * 2)]  # 3 base classes x 2 shots
    assert "new" in data["cells"][0] and "new" in data["reference"]["shape"]
    summary = scoring.summary_of(data)["tasks"]["shape"]
    assert summary["base_new_hm"]["mean"] > 0
    # the score counts the held-out classes: H of base (ID), new, the shift and probe retention, above chance
    ref = data["reference"]["shape"]
    assert ref["chance"] == {"id": 100 / 3, "new": 100 / 3, "shifts": {"outline": 100 / 3}, "probes": {"size": 50.0}}
    above = lambda acc: 100 * (acc - 100 / 3) / (100 - 100 / 3)
    axes = [above(summary["id"]["mean"]), above(summary["new"]["mean"]), above(summary["mean_shift"]["mean"])]
    if ref["probes"]["size"] - 50.0 >= 5:
        axes.append(100 * (summary["probes"]["size"]["mean"] - 50) / (ref["probes"]["size"] - 50))
    else:
        assert "size" in summary["excluded_probes"]
    expected = 0.0 if min(axes) <= 0 else len(axes) / sum(1 / a for a in axes)
    assert summary["score"]["mean"] == pytest.approx(expected, abs=1e-3)
    assert scoring.summary_of(data)["overall"]["new"]["mean"] == pytest.approx(summary["new"]["mean"])
    board = leaderboard.render_suite("mini-split", [(path, data)])
    assert "new-class acc" in board


def test_errors_before_any_work(registry, tmp_path):
    pm, reg = registry
    with pytest.raises(ClipbenchError, match="Unknown task 'shap'"):
        runner.execute(request(tmp_path, tasks=["shap"]), reg, pm)
    with pytest.raises(ClipbenchError, match="Use --shots"):
        runner.execute(request(tmp_path, shots=20), reg, pm)
    with pytest.raises(ClipbenchError, match="has no option"):
        runner.execute(request(tmp_path, options={"counting": {"nope": "1"}}), reg, pm)
    with pytest.raises(ClipbenchError, match="wants a float"):
        runner.execute(request(tmp_path, options={"counting": {"bump": "x"}}), reg, pm)
    assert CountingMethod.calls == [] and not list(tmp_path.iterdir())


def test_an_unwritable_cache_warns_and_the_numbers_are_those_of_no_cache(registry, tmp_path, monkeypatch):
    """A cache folder that cannot be created (a file is in its place): one warning, same numbers as --no-cache."""
    import warnings

    pm, reg = registry
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(blocked))
    req = dict(methods=["linear-probe"], suite="mini", shots=2, seeds=[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [a] = runner.execute(runner.RunRequest(out_dir=tmp_path / "a", **req), reg, pm)
    assert len([w for w in caught if "could not write the embedding cache" in str(w.message)]) == 1
    [b] = runner.execute(runner.RunRequest(out_dir=tmp_path / "b", cache=False, **req), reg, pm)
    ca, cb = results.load_result(a)["cells"][0], results.load_result(b)["cells"][0]
    assert (ca["id"], ca["shifts"], ca["probes"]) == (cb["id"], cb["shifts"], cb["probes"])
