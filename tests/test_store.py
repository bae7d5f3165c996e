"""Cell-level run storage: shards merge into one run, duplicates are caught, nothing done is redone."""

import json

import pytest

from clipbench import results, runner, scoring
from clipbench.errors import ClipbenchError
from clipbench.store import RunStore, merge
from tests.fakes import CountingMethod


def run(reg_pm, out, **kw):
    pm, reg = reg_pm
    base = dict(methods=["counting"], suite="mini", shots=2, seeds=[1, 2, 3], out_dir=out)
    base.update(kw)
    return runner.execute(runner.RunRequest(**base), reg, pm)


def numbers(result):
    return [(c["task"], c["seed"], c["id"], c["shifts"], c["probes"]) for c in result["cells"]]


def scores(result):
    """The summary without timings and memory (which differ from one computation to the next)."""
    timing = ("adapt_seconds", "peak_memory_mb")
    tasks = {t: {k: v for k, v in s.items() if k not in timing} for t, s in scoring.summary_of(result)["tasks"].items()}
    return tasks, {k: v for k, v in scoring.summary_of(result)["overall"].items() if k not in timing}


def test_seeds_run_separately_merge_into_the_sequential_run(registry, tmp_path):
    [sequential] = run(registry, tmp_path / "seq")
    shards = [run(registry, tmp_path / "shard", seeds=[s])[0] for s in (2, 1, 3)]
    assert len(set(shards)) == 1  # one run, one file: seeds are not part of a run's identity
    merged, whole = results.load_result(shards[0]), results.load_result(sequential)
    assert numbers(merged) == numbers(whole)
    assert merged["config"] == whole["config"] and scores(merged) == scores(whole)


def test_a_hand_sharded_sweep_is_the_same_leaderboard_row_as_a_sequential_run(registry, tmp_path):
    """Seeds run by separate processes into one folder render exactly the sequential run's row."""
    from clipbench import leaderboard

    [sequential] = run(registry, tmp_path / "seq")
    [sharded] = {run(registry, tmp_path / "shard", seeds=[s])[0] for s in (3, 1, 2)}
    assert sharded.name == sequential.name
    pages = [leaderboard.render_suite("mini", [(p, results.load_result(p))]) for p in (sequential, sharded)]
    rows = [[line for line in page.splitlines() if line.startswith("| counting")] for page in pages]
    assert rows[0] == rows[1] and rows[0]


def test_adding_a_task_reuses_the_cells_done(registry, tmp_path):
    from clipbench import runner

    pm, reg = registry
    request = dict(suite="mini-split", shots=2, seeds=[1], out_dir=tmp_path)
    runner.execute(runner.RunRequest(["counting"], tasks=["shape"], **request), reg, pm)
    CountingMethod.calls = []
    [path] = runner.execute(runner.RunRequest(["counting"], tasks=["shape", "size"], **request), reg, pm)
    assert [c[0] for c in CountingMethod.calls] == ["size"]  # shape's cell was not recomputed
    assert results.load_result(path)["config"]["tasks"] == ["shape", "size"]


def test_adding_a_seed_reuses_the_cells_done(registry, tmp_path):
    run(registry, tmp_path, seeds=[1, 2])
    CountingMethod.calls = []
    [path] = run(registry, tmp_path, seeds=[1, 2, 3])
    assert [c[1] for c in CountingMethod.calls] == [3]
    assert results.load_result(path)["config"]["seeds"] == [1, 2, 3]


def test_an_identical_duplicate_is_kept_once_a_different_one_is_an_error(registry, tmp_path):
    [path] = run(registry, tmp_path, seeds=[1])
    data = results.load_result(path)
    store = RunStore(tmp_path, data["config"])
    cell = dict(data["cells"][0])
    assert store.put_cell(dict(cell, cost=dict(cell["cost"], adapt_seconds=99.0))) is False  # same numbers
    with pytest.raises(ClipbenchError, match="computed twice with different numbers") as err:
        store.put_cell(dict(cell, id=cell["id"] + 1.0))
    assert str(store.cell_path("shape", 1)) in str(err.value)


def test_the_merged_file_is_rebuilt_from_the_folder(registry, tmp_path):
    [path] = run(registry, tmp_path)
    before = results.load_result(path)
    path.unlink()
    assert merge(RunStore(tmp_path, before["config"]).folder) == path
    assert numbers(results.load_result(path)) == numbers(before)


def test_a_merged_file_without_its_folder_is_adopted(registry, tmp_path):
    """A result file made elsewhere (or before cell folders existed) seeds the run: its cells are not redone."""
    import shutil

    [path] = run(registry, tmp_path / "a", seeds=[1, 2])
    (tmp_path / "b").mkdir()
    shutil.copy(path, tmp_path / "b" / path.name)
    CountingMethod.calls = []
    [again] = run(registry, tmp_path / "b", seeds=[1, 2, 3])
    assert [c[1] for c in CountingMethod.calls] == [3]


def test_a_cell_file_under_another_cells_name_is_refused(registry, tmp_path):
    [path] = run(registry, tmp_path, seeds=[1, 2])
    store = RunStore(tmp_path, results.load_result(path)["config"])
    store.cell_path("shape", 2).write_text(store.cell_path("shape", 1).read_text())
    with pytest.raises(ClipbenchError, match="not the one its name says"):
        store.cells()


def test_a_damaged_cell_file_is_one_sentence_naming_it(registry, tmp_path):
    [path] = run(registry, tmp_path, seeds=[1])
    store = RunStore(tmp_path, results.load_result(path)["config"])
    store.cell_path("shape", 1).write_text("{broken")
    with pytest.raises(ClipbenchError, match="not valid JSON.*Delete it to recompute"):
        run(registry, tmp_path, seeds=[1, 2])


def test_cell_files_get_the_umask_mode(registry, tmp_path):
    import os

    previous = os.umask(0o002)
    try:
        [path] = run(registry, tmp_path, seeds=[1])
    finally:
        os.umask(previous)
    cells = list(tmp_path.glob("*.cells/cells/*.json"))
    assert cells and all(c.stat().st_mode & 0o777 == 0o664 for c in cells)
    assert path.stat().st_mode & 0o777 == 0o664


def test_a_copied_file_that_cannot_be_adopted_is_said_and_never_overwritten(registry, tmp_path, monkeypatch):
    """A copied result file failing the submission checks (e.g. one made with --checkpoint /abs/path, whose
    `pretrained` holds a path) was dropped without a word and rewritten with the new seed only (issue 24)."""
    import shutil

    from clipbench import submission

    [path] = run(registry, tmp_path / "a", seeds=[1])
    (tmp_path / "b").mkdir()
    copied = tmp_path / "b" / path.name
    shutil.copy(path, copied)
    before = copied.read_text()
    monkeypatch.setattr(submission, "check", lambda data, **kw: ["config.pretrained: '/abs/path' is not a name"])
    with pytest.raises(ClipbenchError) as err:
        run(registry, tmp_path / "b", seeds=[2])
    message = str(err.value)
    assert str(copied) in message and "cannot be adopted" in message and "/abs/path" in message
    assert copied.read_text() == before  # seed 1 is still there


def test_a_copied_file_of_another_run_under_this_runs_name_is_refused(registry, tmp_path):
    import shutil

    [path] = run(registry, tmp_path / "a", seeds=[1])
    (tmp_path / "b").mkdir()
    data = json.loads(path.read_text())
    data["config"]["shots"] += 1  # another run's config, renamed to look like this one
    data["config_hash"] = results.config_hash(data["config"])
    (tmp_path / "b" / path.name).write_text(json.dumps(data))
    with pytest.raises(ClipbenchError, match="cannot be adopted"):
        run(registry, tmp_path / "b", seeds=[2])
