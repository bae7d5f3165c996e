"""Sweeps on existing engines: worker processes, submitit and Ray run the same cells the sequential run does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipbench import results, runner, sweep
from clipbench.plugins import collect, get_plugin_manager

GRID = dict(methods=["zeroshot", "linear-probe"], suite="default", tasks=["shape", "colour"], seeds=[1, 2], shots=4)


def numbers(path: Path) -> list:
    data = results.load_result(path)
    return [(c["task"], c["seed"], c["id"], c["shifts"], c["probes"]) for c in data["cells"]], data["config"]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    pm = get_plugin_manager(load_entrypoints=False)
    paths = runner.execute(runner.RunRequest(out_dir=tmp_path_factory.mktemp("seq"), **GRID), collect(pm), pm)
    return {results.load_result(p)["config"]["method"]: numbers(p) for p in paths}


def sweep_run(tmp_path, options):
    pm = get_plugin_manager(load_entrypoints=False)
    paths = sweep.execute(runner.RunRequest(out_dir=tmp_path, **GRID), collect(pm), pm, options)
    return {results.load_result(p)["config"]["method"]: numbers(p) for p in paths}


def test_local_workers_give_the_sequential_numbers_and_leave_nothing_pending(sequential, tmp_path):
    assert sweep_run(tmp_path, sweep.SweepOptions(executor="local", workers=2)) == sequential
    pm = get_plugin_manager(load_entrypoints=False)
    cells, _ = sweep.pending(runner.RunRequest(out_dir=tmp_path, **GRID), collect(pm))
    assert cells == []


def test_a_free_local_worker_takes_a_cell_of_a_task_it_has_scored_else_an_unstarted_task():
    queue = [("m", "shape", 1), ("m", "colour", 1), ("m", "digits", 1), ("n", "shape", 1)]
    assert sweep.pick_cell(queue, own={"digits"}, started={"digits", "shape"}) == 2  # its own task first
    assert sweep.pick_cell(queue, own=set(), started={"shape", "digits"}) == 1  # else a task nobody started
    assert sweep.pick_cell(queue[:1] + queue[3:], own={"colour"}, started={"shape", "colour"}) == 0  # else any


def test_local_workers_share_the_usable_cores_even_when_their_count_is_unknown(monkeypatch):
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    assert [sweep.threads_per_worker(w) for w in (1, 2, 3, 8)] == [5, 2, 1, 1]
    monkeypatch.delattr(sweep.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: None)
    assert sweep.threads_per_worker(2) == 1


def _engine(name: str):
    """The engine, or a skip; in CI (CI=true, where the README's command installs both extras) a failure."""
    try:
        return __import__(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: the README's test command installs clipbench[slurm,ray]")
        pytest.skip(f"{name} is not installed")


def test_submitit_gives_the_sequential_numbers(sequential, tmp_path):
    _engine("submitit")
    options = sweep.SweepOptions(executor="slurm", extra={"cluster": "debug"})
    assert sweep_run(tmp_path, options) == sequential
    assert (tmp_path / ".submitit").is_dir()


def test_ray_gives_the_sequential_numbers(sequential, tmp_path):
    _engine("ray")
    assert sweep_run(tmp_path, sweep.SweepOptions(executor="ray", workers=2)) == sequential


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_a_killed_worker_loses_only_its_cell_and_resubmission_finishes(tmp_path):
    argv = [sys.executable, "-m", "clipbench.cli", "run", "--method", "full-ft", "--option", "full-ft.epochs=3",
            "--task", "shape", "colour",
            "--seeds", "1,2", "--shots", "4", "--executor", "local", "--workers", "2", "--out", str(tmp_path)]
    env = dict(os.environ, CLIPBENCH_LOAD_PLUGINS="")
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and not list(tmp_path.glob("*.cells/cells/*.json")):
        time.sleep(0.2)
    done_before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.glob("*.cells/cells/*.json")}
    victims = [w for w in _children(driver.pid) if b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()]
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 2, (out, err)
    assert "A worker process died" in err and "Traceback" not in err
    assert 1 <= len(done_before) < 4
    rerun = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.glob("*.cells/cells/*.json")}
    assert len(after) == 4
    assert all(after[name] == stamp for name, stamp in done_before.items())  # nothing done was recomputed
    [merged] = list(tmp_path.glob("default__full-ft__*.json"))
    assert len(results.load_result(merged)["cells"]) == 4


def test_a_cell_still_queued_on_slurm_is_not_submitted_twice(tmp_path):
    """`--no-wait`, then the same command again: cells whose job is still pending or running are skipped."""
    import json

    folder = tmp_path / ".submitit"
    folder.mkdir()
    (folder / sweep.SUBMITTED).write_text(json.dumps({"saft/shape/1": "41_0", "saft/shape/2": "41_1",
                                                      "saft/colour/1": "41_2"}))
    states = {"41_0": "RUNNING", "41_1": "FAILED", "41_2": "PENDING"}
    cells = [("saft", "shape", 1), ("saft", "shape", 2), ("saft", "colour", 1), ("saft", "colour", 2)]
    queued = sweep.still_queued(folder, cells, state=lambda f, job: states[job])
    assert queued == {("saft", "shape", 1): "41_0", ("saft", "colour", 1): "41_2"}
    (folder / sweep.SUBMITTED).write_text("not json")
    assert sweep.still_queued(folder, cells, state=lambda f, job: "RUNNING") == {}
    # another run in the same --out (other shots, options or model) never blocks this run's cells
    (folder / sweep.SUBMITTED).write_text(json.dumps({"runA/shape/1": "7_0"}))
    keys_b = {c: f"runB/{c[1]}/{c[2]}" for c in cells}
    assert sweep.still_queued(folder, cells, state=lambda f, job: "RUNNING", keys=keys_b) == {}
    keys_a = {c: f"runA/{c[1]}/{c[2]}" for c in cells}
    assert sweep.still_queued(folder, cells, state=lambda f, job: "RUNNING", keys=keys_a) == {cells[0]: "7_0"}


def test_the_core_never_imports_an_engine():
    out = subprocess.run([sys.executable, "-c", "import sys, clipbench.cli, clipbench.runner, clipbench.sweep; "
                          "print(sorted(m for m in ('submitit', 'ray') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_workers_are_capped_at_the_cores_and_the_cells_and_the_log_says_so(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(sweep, "available_cores", lambda: 2)
    assert [sweep.local_workers(asked, cells) for asked, cells in ((1000, 40), (1000, 1), (1, 40), (2, 2))] \
        == [2, 1, 1, 2]
    store = SimpleNamespace(config={"method": "m"}, folder=Path("never-made"), done=lambda: False)
    monkeypatch.setattr(sweep, "pending", lambda request, registry: ([("m", "t", s) for s in range(40)], [store]))
    started = []
    monkeypatch.setattr(sweep, "_local", lambda fields, cells, options, *rest: started.append(options.workers))
    lines = []
    sweep.execute(runner.RunRequest(methods=["m"]), None, None, sweep.SweepOptions(executor="local", workers=1000),
                  log=lines.append)
    assert started == [2]
    assert any("--workers 1000 capped at 2" in line for line in lines), lines


# ------------------------------------------------------------------ what every engine's job receives


def test_each_cell_gets_only_its_own_methods_options_and_absolute_paths(tmp_path, monkeypatch):
    """`--option linear-probe.steps=5 --method zeroshot linear-probe`: the zeroshot cell's request must not name
    linear-probe (it was refused: "--option names method 'linear-probe', which is not among --method zeroshot")."""
    pm = get_plugin_manager(load_entrypoints=False)
    registry = collect(pm)
    monkeypatch.chdir(tmp_path)
    request = runner.RunRequest(methods=["zeroshot", "linear-probe"], options={"linear-probe": {"steps": "5"}},
                                out_dir=Path("out"), tasks=["shape"], seeds=[1])
    fields = sweep.request_fields(request)
    for cell in [("zeroshot", "shape", 1), ("linear-probe", "shape", 1)]:
        cell_request = sweep._request(fields, cell)
        runner.plan(cell_request, registry)  # raises for a request naming another method's option
        assert cell_request.options == ({"linear-probe": {"steps": "5"}} if cell[0] == "linear-probe" else {})
    # a job starts in another folder: every path it gets is absolute, ./tuned included
    assert fields["out_dir"] == str(tmp_path / "out") and fields["tuned_dir"] == str(tmp_path / "tuned")
