"""Sweeps on existing engines: worker processes, submitit and Ray run the same cells the sequential run does."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipbench import results, runner, sweep
from clipbench.errors import ClipbenchError
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
    paths = sweep.dispatch(runner.RunRequest(out_dir=tmp_path, **GRID), collect(pm), pm, options)
    return {results.load_result(p)["config"]["method"]: numbers(p) for p in paths}


@pytest.mark.slow
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


@pytest.mark.slow
def test_submitit_gives_the_sequential_numbers(sequential, tmp_path):
    _engine("submitit")
    options = sweep.SweepOptions(executor="slurm", extra={"cluster": "debug"})
    assert sweep_run(tmp_path, options) == sequential
    assert (tmp_path / ".submitit").is_dir()


REPO = Path(__file__).resolve().parents[1]


def lab_folder(tmp_path: Path) -> Path:
    """A folder holding a clone named clipbench (the usual layout `lab/clipbench/`): from here, Python finds that
    clone as a namespace package named clipbench before the installed one, unless the workers run elsewhere."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "clipbench").symlink_to(REPO)
    return lab


@pytest.mark.slow
def test_ray_gives_the_sequential_numbers_when_started_beside_a_clone(sequential, tmp_path, monkeypatch):
    _engine("ray")
    monkeypatch.chdir(lab_folder(tmp_path))  # Ray puts the driver's folder on its workers' import path
    assert sweep_run(tmp_path / "out", sweep.SweepOptions(executor="ray", workers=2)) == sequential


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


@pytest.mark.slow
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

    from clipbench.sweep_slurm import SUBMITTED, JobState, SlurmSilent, still_queued

    folder = tmp_path / ".submitit"
    folder.mkdir()
    (folder / SUBMITTED).write_text(json.dumps({"saft/shape/1": "41_0", "saft/shape/2": "41_1",
                                                "saft/colour/1": "41_2"}))
    states = {"41_0": JobState("RUNNING"), "41_1": JobState("FAILED"), "41_2": JobState("PENDING", "Priority")}
    cells = [("saft", "shape", 1), ("saft", "shape", 2), ("saft", "colour", 1), ("saft", "colour", 2)]
    asked = []
    queued = still_queued(folder, cells, lambda ids: asked.append(ids) or {j: states[j] for j in ids})
    assert queued == {("saft", "shape", 1): "41_0", ("saft", "colour", 1): "41_2"}
    assert asked == [["41_0", "41_1", "41_2"]]  # one question to Slurm for all of them
    with pytest.raises(ClipbenchError, match="Slurm does not answer .*cannot be told which cells are still queued"):
        still_queued(folder, cells, lambda ids: (_ for _ in ()).throw(SlurmSilent("slurmctld is down")))
    (folder / SUBMITTED).write_text("not json")
    assert still_queued(folder, cells, lambda ids: {j: JobState("RUNNING") for j in ids}) == {}
    # another run in the same --out (other shots, options or model) never blocks this run's cells
    (folder / SUBMITTED).write_text(json.dumps({"runA/shape/1": "7_0"}))
    running = lambda ids: {j: JobState("RUNNING") for j in ids}  # noqa: E731
    assert still_queued(folder, cells, running, keys={c: f"runB/{c[1]}/{c[2]}" for c in cells}) == {}
    assert still_queued(folder, cells, running, keys={c: f"runA/{c[1]}/{c[2]}" for c in cells}) == {cells[0]: "7_0"}


def test_the_core_never_imports_an_engine():
    out = subprocess.run([sys.executable, "-c", "import sys, clipbench.cli, clipbench.runner, clipbench.sweep, "
                          "clipbench.sweep_slurm, clipbench.sweep_ray; "
                          "print(sorted(m for m in ('submitit', 'ray') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _dispatch_forty_cells_on_two_cores(monkeypatch, options) -> tuple[list, list]:
    """Dispatch 40 pending cells on a 2-core machine without computing any: (workers _local got, log lines)."""
    from types import SimpleNamespace

    monkeypatch.setattr(sweep, "available_cores", lambda: 2)
    store = SimpleNamespace(config={"method": "m"}, folder=Path("never-made"), done=lambda: False)
    prepared = SimpleNamespace(pending=lambda: [("m", "t", s) for s in range(40)], runs=[SimpleNamespace(store=store)])
    monkeypatch.setattr("clipbench.prepare.prepare", lambda request, registry, reporter=None: prepared)
    started, lines = [], []
    monkeypatch.setattr(sweep, "_local", lambda fields, cells, options, *rest: started.append(options.workers))
    registry = collect(get_plugin_manager(load_entrypoints=False))
    sweep.dispatch(runner.RunRequest(methods=["m"], device="cpu"), registry, None, options, log=lines.append)
    return started, lines


def test_local_workers_are_capped_at_the_cores_and_the_cells_and_the_log_says_so(monkeypatch):
    monkeypatch.setattr(sweep, "available_cores", lambda: 2)
    assert [sweep.local_workers(asked, cells) for asked, cells in ((1000, 40), (1000, 1), (1, 40), (2, 2))] \
        == [2, 1, 1, 2]
    started, lines = _dispatch_forty_cells_on_two_cores(monkeypatch, sweep.SweepOptions(executor="local", workers=1000))
    assert started == [2]
    assert any("--workers 1000 capped at 2" in line for line in lines), lines


def test_auto_runs_one_thread_per_cell_and_a_cell_per_core_on_the_cpu(monkeypatch):
    monkeypatch.setattr(sweep, "available_cores", lambda: 4)
    request = runner.RunRequest(methods=["m"], device="cpu")
    auto = sweep.SweepOptions(executor="auto")
    assert (lambda o: (o.executor, o.workers, o.threads))(sweep.auto_layout(request, 15, auto)) == ("local", 4, 1)
    assert (lambda o: (o.executor, o.workers, o.threads))(sweep.auto_layout(request, 3, auto)) == ("local", 3, 1)
    assert (lambda o: (o.executor, o.threads))(sweep.auto_layout(request, 1, auto)) == ("sequential", 1)
    fewer = sweep.SweepOptions(executor="auto", workers=2)  # --workers lowers it, still a thread per cell
    assert (lambda o: (o.executor, o.workers, o.threads))(sweep.auto_layout(request, 15, fewer)) == ("local", 2, 1)
    one = sweep.SweepOptions(executor="auto", workers=1)
    assert (lambda o: (o.executor, o.threads))(sweep.auto_layout(request, 15, one)) == ("sequential", 1)
    monkeypatch.setattr(sweep, "available_cores", lambda: 1)
    assert (lambda o: (o.executor, o.threads))(sweep.auto_layout(request, 15, auto)) == ("sequential", 1)
    monkeypatch.setattr(runner, "resolve_device", lambda device: __import__("torch").device("cuda"))
    monkeypatch.setattr(sweep, "available_cores", lambda: 4)
    assert (lambda o: (o.executor, o.threads))(sweep.auto_layout(request, 15, auto)) == ("sequential", None)


@pytest.mark.slow
def test_auto_gives_the_numbers_of_a_one_thread_sequential_run_of_a_training_method(tmp_path, monkeypatch):
    """Training reduces differently at two threads than at one (measured: weights differ by 1e-4 after three
    steps), so the board's rows are made at one thread; auto keeps that layout whatever the core count."""
    import torch

    grid = dict(methods=["full-ft"], suite="default", tasks=["shape"], seeds=[1, 2], shots=2,
                options={"full-ft": {"epochs": 2}})
    pm = get_plugin_manager(load_entrypoints=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        [seq] = runner.execute(runner.RunRequest(out_dir=tmp_path / "seq", **grid), collect(pm), pm)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(sweep, "available_cores", lambda: 2)
    [auto] = sweep.dispatch(runner.RunRequest(out_dir=tmp_path / "auto", **grid), collect(pm), pm,
                           sweep.SweepOptions(executor="auto"))
    assert numbers(auto)[0] == numbers(seq)[0]
    assert results.load_result(auto)["provenance"]["threads"] == 1
    assert torch.get_num_threads() == before


def test_a_sweep_tells_the_plan_before_the_work_once(tmp_path, monkeypatch):
    """The batch log of the default (auto) layout starts with the plan, as a sequential run's does, and an auto
    run that falls back to this process does not tell it twice."""
    from clipbench import protocol

    heard = []

    class Listener(protocol.SilentReporter):
        def planned(self, o):
            heard.append(("planned", o.cells))

        def prepared(self, o):
            heard.append(("prepared", len(o.pending)))

    monkeypatch.setattr(sweep, "available_cores", lambda: 1)  # auto: one pending cell -> this process
    pm = get_plugin_manager(load_entrypoints=False)
    request = runner.RunRequest(methods=["zeroshot"], tasks=["shape"], seeds=[1], shots=1, out_dir=tmp_path)
    sweep.dispatch(request, collect(pm), pm, sweep.SweepOptions(executor="auto"), Listener())
    assert heard == [("planned", 1), ("prepared", 1)]
# ------------------------------------------------------------------ what every engine's job receives


def test_a_job_prepares_the_drivers_whole_request_with_absolute_paths(tmp_path, monkeypatch):
    """A job prepares the sweep's request once and runs its cells of it (it never plans per cell), so
    `--option linear-probe.steps=5 --method zeroshot linear-probe` reaches it whole and each method keeps only
    its own options; a per-cell request naming one method was once refused for the other's option."""
    pm = get_plugin_manager(load_entrypoints=False)
    registry = collect(pm)
    monkeypatch.chdir(tmp_path)
    request = runner.RunRequest(methods=["zeroshot", "linear-probe"], options={"linear-probe": {"steps": "5"}},
                                out_dir=Path("out"), tasks=["shape"], seeds=[1])
    fields = sweep.request_fields(request)
    job = sweep._request(fields)
    assert job == dataclasses.replace(request, out_dir=tmp_path / "out", tuned_dir=tmp_path / "tuned")
    p = runner.plan(job, registry)
    assert {m.name: c.steps for m, c, _ in p.methods if m.name == "linear-probe"} == {"linear-probe": 5}
    # a job starts in another folder: every path it gets is absolute, ./tuned included
    assert fields["out_dir"] == str(tmp_path / "out") and fields["tuned_dir"] == str(tmp_path / "tuned")


@pytest.mark.parametrize("argv, message", [
    (["--executor", "slurm", "--time-min", "2"], "--time-min 2 is too short for Slurm"),
    (["--executor", "ray", "--gpus", "-1"], "--gpus must be a whole number of at least 0"),
    (["--executor", "local", "--gpus", "1"], "--gpus is for --executor slurm or ray"),
])
def test_requests_no_engine_can_run_are_one_sentence_before_any_work(capsys, tmp_path, monkeypatch, argv, message):
    from clipbench.cli import main

    monkeypatch.setattr("clipbench.prepare.prepare", lambda *a: pytest.fail("work started before the request was checked"))
    code = main(["run", "--method", "zeroshot", "--out", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ Slurm: the partition, the queue, the wait


SINFO = "debug*|2|21694|(null)|infinite\ngpu|32|515000|gpu:a100:4(S:0-1)|2-00:00:00\nshort|8+|64000|gpu:2,shard:8|30:00\n"


def completed(stdout="", stderr="", code=0):
    return subprocess.CompletedProcess([], code, stdout, stderr)


@pytest.mark.parametrize("changes, message", [
    (dict(partition="nope"), "Slurm has no partition 'nope': use one of debug, gpu, short"),
    (dict(cpus=4, mem_gb=16), "No node of partition 'debug' can run a job of --cpus 4 --mem-gb 16 --gpus 0"),
    (dict(cpus=1, mem_gb=1, gpus=1), "the largest has 2 CPUs, 21 GB, 0 GPUs"),
    (dict(partition="gpu", gpus=8), "No node of partition 'gpu'"),
    (dict(partition="gpu", mem_gb=600), "No node of partition 'gpu'"),
    (dict(partition="short", time_min=45), "over the time limit of partition 'short' (30 minutes)"),
])
def test_a_request_no_node_of_the_partition_can_meet_is_refused_before_submission(changes, message):
    from clipbench import sweep_slurm

    calls = []
    run = lambda argv: calls.append(argv) or completed(SINFO)  # noqa: E731  (sinfo's own output format)
    options = sweep.SweepOptions(executor="slurm", **{"cpus": 1, "mem_gb": 1, **changes})
    with pytest.raises(ClipbenchError, match=re.escape(message)):
        sweep_slurm.check(options, run=run)
    assert calls == [["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l"]]
    for fits in (dict(cpus=2, mem_gb=16), dict(partition="gpu", gpus=4, cpus=32, time_min=2880),
                 dict(partition="short", gpus=2, time_min=30)):
        sweep_slurm.check(sweep.SweepOptions(executor="slurm", **{"cpus": 1, "mem_gb": 1, **fits}), run=run)


def test_no_slurm_here_is_one_sentence():
    from clipbench import sweep_slurm

    def missing(argv):
        raise sweep_slurm.SlurmSilent("sinfo is not installed here")

    with pytest.raises(ClipbenchError, match="needs a Slurm cluster, but sinfo could not be run"):
        sweep_slurm.check(sweep.SweepOptions(executor="slurm"), run=missing)


def test_squeue_answers_first_and_a_cluster_without_accounting_is_asked_no_sacct_again():
    from clipbench.sweep_slurm import JobState, SlurmQueue, SlurmSilent

    answers = {
        "squeue": [completed("41_0|RUNNING|None\n41_2|PENDING|PartitionConfig\n41_3|COMPLETED|None\n"),
                   completed("", "slurm_load_jobs error: Invalid job id specified", 1),
                   completed("", "squeue: error: Unable to contact slurm controller (connect failure)", 1)],
        "sacct": [completed("", "Slurm accounting storage is disabled", 1)],
    }
    calls = []

    def run(argv):
        calls.append(argv[0])
        return answers[argv[0]].pop(0)

    queue = SlurmQueue(run)
    assert queue.states(["41_0", "41_1", "41_2", "41_3"]) == {
        "41_0": JobState("RUNNING"), "41_1": JobState("GONE"), "41_2": JobState("PENDING", "PartitionConfig"),
        "41_3": JobState("COMPLETED")}
    assert calls == ["squeue", "sacct"] and queue.accounting is False
    assert queue.states(["41_1"]) == {"41_1": JobState("GONE")}  # squeue knows none of them: not an error
    assert calls == ["squeue", "sacct", "squeue"]  # and sacct is not asked again
    with pytest.raises(SlurmSilent, match="Unable to contact slurm controller"):
        queue.states(["41_0"])


def test_sacct_tells_how_jobs_squeue_has_forgotten_ended():
    from clipbench.sweep_slurm import JobState, SlurmQueue

    answers = iter([completed("", "slurm_load_jobs error: Invalid job id specified", 1),
                    completed("41_0|COMPLETED\n41_1|CANCELLED by 1000\n")])
    queue = SlurmQueue(lambda argv: next(answers))
    assert queue.states(["41_0", "41_1", "41_2"]) == {"41_0": JobState("COMPLETED"), "41_1": JobState("CANCELLED"),
                                                      "41_2": JobState("GONE")}
    assert queue.accounting is True


class ScriptedSlurm:
    """Slurm's answers over time for a wait: one dict of states (or an exception) per look, with what a job
    writes before that look (its result file, its log); the clock moves only when the wait sleeps."""

    def __init__(self, steps):
        self.steps, self.now, self.looks = list(steps), 0.0, 0

    def states(self, job_ids):
        step = self.steps[min(self.looks, len(self.steps) - 1)]
        self.looks += 1
        for write in step.get("writes", ()):
            write()
        if "raise" in step:
            raise step["raise"]
        return {j: step["states"].get(j) for j in job_ids if j in step["states"]}

    def sleep(self, seconds):
        self.now += seconds


def slurm_job(folder: Path, job_id: str):
    submitit = _engine("submitit")
    return submitit.SlurmJob(folder=folder, job_id=job_id)


def result(job, outcome, payload):
    from submitit.core.utils import cloudpickle_dump

    return lambda: cloudpickle_dump((outcome, payload), job.paths.result_pickle)


def test_a_requeued_job_is_waited_for_not_read_as_failed(tmp_path):
    """USR2 (preemption or the time limit): the job checkpoints, Slurm requeues it (PENDING, BeginTime), and an error
    its first run may have left is not its last word; the requeued run's success is."""
    from clipbench.sweep_slurm import JobState, wait

    job = slurm_job(tmp_path, "7_0")
    trace = "Traceback (most recent call last):\nsubmitit.core.utils.UncompletedJobError: Job not requeued"
    slurm = ScriptedSlurm([
        {"states": {"7_0": JobState("RUNNING")}},
        {"states": {"7_0": JobState("COMPLETING")}, "writes": [result(job, "error", trace)]},
        {"states": {"7_0": JobState("PENDING", "BeginTime")}},
        {"states": {"7_0": JobState("RUNNING")}},
        {"states": {"7_0": JobState("RUNNING")}, "writes": [result(job, "success", [("m", "t", 1)])]},
    ])
    reported, lines = [], []
    wait([(job, ("m", "t", 1))], slurm, reported.append, lines.append, clock=lambda: slurm.now, sleep=slurm.sleep)
    assert reported == [("m", "t", 1)]
    assert "slurm: 1 pending (BeginTime), 0 done" in lines


def test_a_killed_job_fails_after_a_bounded_wait_naming_its_cell_its_cause_and_its_log(tmp_path):
    """A job killed (scancel --signal=KILL, out of memory) leaves no result: once Slurm no longer holds it, the wait
    gives its result a grace period, then names the cell, the end of its log and the log's path."""
    from clipbench.sweep_slurm import ENDED_GRACE_S, JobState, wait

    killed, failed, fine = (slurm_job(tmp_path, f"9_{i}") for i in range(3))
    killed.paths.stderr.write_text("clipbench: cell zeroshot/colour/1 on node1 pid 12 (Slurm job 9_0)\n"
                                   "submitit WARNING (2026) - Bypassing signal SIGTERM\n"
                                   "slurmstepd: error: *** STEP 9.0 ON node1 CANCELLED ***\n"
                                   "srun: error: node1: task 0: Killed\n")
    trace = ('Traceback (most recent call last):\n  File "runner.py", line 3, in execute\n'
             "clipbench.errors.ClipbenchError: Method 'saft' failed on task shape, seed 2: ValueError: bad lr\n")
    slurm = ScriptedSlurm([
        {"states": {"9_0": JobState("RUNNING"), "9_1": JobState("RUNNING"), "9_2": JobState("PENDING", "Resources")}},
        {"states": {"9_0": JobState("FAILED", "NonZeroExitCode"), "9_1": JobState("FAILED"),
                    "9_2": JobState("RUNNING")}, "writes": [result(failed, "error", trace)]},
        {"states": {"9_2": JobState("RUNNING")}, "writes": [result(fine, "success", [])]},
        {"states": {}},  # all three have left the queue
    ])
    reported, lines = [], []
    cells = [("zeroshot", "colour", 1), ("saft", "shape", 2), ("zeroshot", "shape", 1)]
    with pytest.raises(ClipbenchError) as caught:
        wait(list(zip([killed, failed, fine], cells)), slurm, reported.append, lines.append,
             clock=lambda: slurm.now, sleep=slurm.sleep)
    message = str(caught.value)
    assert reported == [("zeroshot", "shape", 1)]
    assert message.startswith("2 of 3 cell job(s) failed; every cell that finished is saved and merged.")
    assert "zeroshot/colour/1: job 9_0 ended without a result (no longer known to Slurm)" in message
    assert "srun: error: node1: task 0: Killed" in message and "Bypassing signal" not in message
    assert f"log: {killed.paths.stderr}" in message
    assert "saft/shape/2: job 9_1 failed" in message and "ValueError: bad lr" in message
    assert f"log: {failed.paths.stderr}" in message
    assert slurm.now >= ENDED_GRACE_S  # the killed job was given its grace, and no more than needed
    assert slurm.now < ENDED_GRACE_S + 30
    assert "slurm: 2 running, 1 pending (Resources), 0 done" in lines


def test_a_slurm_that_stops_answering_ends_the_wait_with_a_sentence(tmp_path):
    from clipbench.sweep_slurm import SILENCE_LIMIT_S, JobState, SlurmSilent, wait

    job = slurm_job(tmp_path, "3")
    slurm = ScriptedSlurm([{"states": {"3": JobState("RUNNING")}},
                           {"raise": SlurmSilent("Unable to contact slurm controller")}])
    lines = []
    with pytest.raises(ClipbenchError, match="Slurm has not answered squeue for 10 minutes .*may still be running"):
        wait([(job, ("m", "t", 1))], slurm, lambda cell: None, lines.append, clock=lambda: slurm.now,
             sleep=slurm.sleep)
    assert SILENCE_LIMIT_S <= slurm.now < SILENCE_LIMIT_S + 30
    assert lines == ["slurm: 1 running, 0 done",
                     "slurm: squeue does not answer (Unable to contact slurm controller); still waiting"]


def test_a_job_that_can_never_start_is_said_in_the_queue_line():
    from clipbench.sweep_slurm import JobState, queue_line

    line = queue_line({"5_0": JobState("PENDING", "PartitionConfig"), "5_1": JobState("RUNNING")}, 2, 1)
    assert line.startswith("slurm: 1 running, 1 pending (PartitionConfig), 2 done, 1 failed - PartitionConfig: "
                           "Slurm will not start these jobs as asked")


# ------------------------------------------------------------------ Ray: the driver's environment, GPUs


@pytest.mark.slow
def test_ray_workers_get_the_drivers_settings_and_a_gpu_each_when_asked(sequential, tmp_path, monkeypatch):
    """A cluster started elsewhere never saw the driver's environment: CLIPBENCH_* travel in the runtime_env.
    --gpus asks Ray for GPUs per cell (here one declared GPU): each cell runs on one of its own."""
    ray = _engine("ray")
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        lines = []
        pm = get_plugin_manager(load_entrypoints=False)
        one = dict(GRID, methods=["zeroshot"], tasks=["shape"], seeds=[1])
        [path] = sweep.dispatch(runner.RunRequest(out_dir=tmp_path / "a", **one), collect(pm), pm,
                               sweep.SweepOptions(executor="ray", gpus=1), log=lines.append)
        cells, _ = numbers(path)
        assert cells == [c for c in sequential["zeroshot"][0] if c[0] == "shape" and c[1] == 1]
        assert "zeroshot/shape/1 ran on GPU 0" in lines
        monkeypatch.setenv("CLIPBENCH_LOAD_PLUGINS", "no-such-plugin")  # set after the cluster started
        with pytest.raises(ClipbenchError, match="zeroshot/shape/1: failed on Ray(.|\n)*no-such-plugin"):
            sweep.dispatch(runner.RunRequest(out_dir=tmp_path / "b", **one), collect(pm), pm,
                          sweep.SweepOptions(executor="ray"))
    finally:
        ray.shutdown()


def test_more_gpus_than_the_ray_cluster_has_is_refused_where_it_cannot_grow_and_said_where_it_may():
    from clipbench.sweep_ray import check_gpus

    lines = []
    check_gpus(1, 1.0, started_here=True, log=lines.append)
    assert lines == []
    with pytest.raises(ClipbenchError, match=re.escape("--gpus 2 asks for 2 GPU(s) per cell, but the Ray cluster "
                                                       "started here has 1: Ray would keep the cells waiting forever")):
        check_gpus(2, 1.0, started_here=True, log=lines.append)
    check_gpus(2, 0.0, started_here=False, log=lines.append)  # an autoscaler may still add GPU nodes
    assert lines == ["--gpus 2: the Ray cluster has 0 GPU(s) now, so the cells wait until nodes with enough GPUs "
                     "join (an autoscaler may add them); Ctrl-C stops waiting, and finished cells are kept"]


# ------------------------------------------------------------------ the real engines (tools/cluster-up)
# A real single-node Slurm without accounting and a real Ray head, both on 127.0.0.1, brought up by
# tools/cluster-up (CI does it before the tests); without them these tests skip, saying why.

REAL_ARGV = ["run", "--method", "zeroshot", "linear-probe", "--option", "linear-probe.steps=300", "--task", "shape",
             "--seeds", "1,2", "--shots", str(GRID["shots"]), "--out", "out", "--no-progress"]


def real_engine(name: str) -> str:
    """What tools/cluster-up wrote for a real engine (Slurm: 1; Ray: the head's address), or a skip saying why."""
    value = os.environ.get(f"CLIPBENCH_REAL_{name.upper()}")
    if not value:
        why = (os.environ.get(f"CLIPBENCH_REAL_{name.upper()}_UNAVAILABLE")
               or "not brought up here: run tools/cluster-up and source the env file it writes (see the README)")
        pytest.skip(f"no real {name}: {why}")
    return value


def cli(*argv: str, cwd: Path, env: dict | None = None, wait: bool = True):
    """The installed `clipbench` command, as a user starts it (from ``cwd``: a folder holding a clone)."""
    command = [str(Path(sys.executable).with_name("clipbench")), *argv]
    env = dict(os.environ, CLIPBENCH_LOAD_PLUGINS="", **(env or {}))  # only the built-ins, as `sequential` has
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@contextlib.contextmanager
def running(driver: subprocess.Popen):
    """A command started in the background, never left running by a failed test."""
    try:
        yield driver
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()


def merged_cells(out: Path) -> dict:
    return {results.load_result(p)["config"]["method"]: numbers(p)[0] for p in sorted(out.glob("*.json"))}


def shape_cells(sequential) -> dict:
    return {method: [c for c in cells if c[0] == "shape"] for method, (cells, _) in sequential.items()}


def lines_until(stream, text: str) -> str:
    """What a running command printed up to and including the line holding ``text`` (all of it if it ends first)."""
    seen = ""
    for line in iter(stream.readline, ""):
        seen += line
        if text in line:
            break
    return seen


@contextlib.contextmanager
def partition_down(partition: str = "debug"):
    """tools/cluster-up's partition taking jobs but starting none (State=DOWN), brought back up on the way out."""
    def state(value: str) -> None:
        subprocess.run(["scontrol", "update", f"PartitionName={partition}", f"State={value}"], check=True,
                       capture_output=True, timeout=60)

    state("DOWN")
    try:
        yield
    finally:
        state("UP")


def job_running_a_cell(out: Path, taken: set, timeout: float = 300) -> tuple[str, str, int]:
    """A Slurm job whose log names its cell (its signal handlers are installed) and whose cell is not yet on disk:
    its id, its cell and the pid of its process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in sorted((out / ".submitit").glob("*_0_log.err")):
            job = log.name[: -len("_0_log.err")]
            match = re.search(r"clipbench: cell (\S+)/(\S+)/(\d+) on \S+ pid (\d+)", log.read_text(errors="replace"))
            if job in taken or not match:
                continue
            method, task, seed, pid = match.groups()
            if not list(out.glob(f"*__{method}__*.cells/cells/{task}__seed{seed}.json")):
                return job, f"{method}/{task}/{seed}", int(pid)
        time.sleep(0.2)
    pytest.fail(f"no job started a cell within {timeout} s")


@pytest.mark.real_cluster
@pytest.mark.xdist_group("real-cluster")  # one engine at a time: they share the node's two CPUs
def test_a_real_slurm_sweep_from_beside_a_clone_survives_requeue_kill_and_rerun(sequential, tmp_path):
    """Slurm without accounting: `--no-wait`, then the same command while the jobs are queued (nothing submitted
    twice), one job requeued mid-cell (USR2, as Slurm sends before preemption or the time limit) and waited for, one
    killed mid-cell (as the out-of-memory killer does) and named with its log, then the same command again: the
    merged numbers are the sequential run's."""
    real_engine("slurm")
    lab = lab_folder(tmp_path)
    out = lab / "out"
    argv = [*REAL_ARGV, "--executor", "slurm", "--cpus", "1", "--mem-gb", "1", "--time-min", "10"]
    # the partition is down until the second command watches the queue: its jobs pend (PartitionDown) instead of
    # finishing while that command starts, which on a loaded machine left no cell running to requeue or kill
    with partition_down():
        first = cli(*argv, "--no-wait", cwd=lab)
        assert first.returncode == 0, first.stderr
        assert "submitted 4 job(s)" in first.stdout and "Bypassing sacct" not in first.stdout + first.stderr
        driver = cli(*argv, cwd=lab, env={"PYTHONUNBUFFERED": "1"}, wait=False)
        seen = lines_until(driver.stdout, "waiting for them too")  # it has chosen what not to submit again
    with running(driver):
        # the signals Slurm sends the job's process (`scancel --signal` may deliver one twice: it retries while the
        # job is requeueing, so it would requeue it twice)
        requeued, requeued_cell, pid = job_running_a_cell(out, set())
        os.kill(pid, signal.SIGUSR2)  # preemption, or the time limit coming
        killed, killed_cell, pid = job_running_a_cell(out, {requeued})
        os.kill(pid, signal.SIGKILL)  # the out-of-memory killer (`scancel --signal=KILL` cancels, with KillWait to go)
        stdout, stderr = driver.communicate(timeout=900)
        stdout = seen + stdout
    assert driver.returncode == 2, (stdout, stderr)
    # the jobs run meanwhile (a first one may be done): those still queued or running are not submitted again
    assert re.search(r"\d cell\(s\) are still queued or running from an earlier submission", stdout)
    assert not re.search(r"submitted \d+ job", stdout)
    # queue states; Slurm's states are listed alphabetically, so a job already FAILED (the killed one) comes first
    assert re.search(r"slurm: .*\d pending \(", stdout) and re.search(r"slurm: (\d+ \w+, )*\d running", stdout)
    assert "Bypassing sacct" not in stdout + stderr and "Traceback" not in stderr
    assert re.match(r"error: 1 of \d cell job\(s\) failed; every cell that finished is saved and merged", stderr), stderr
    assert f"{killed_cell}: job {killed} ended without a result" in stderr
    assert f"log: {out.resolve()}/.submitit/{killed}_0_log.err" in stderr
    assert requeued_cell not in stderr  # waited for through its requeue
    requeued_log = (out / ".submitit" / f"{requeued}_0_log.err").read_text()
    assert requeued_log.count(f"clipbench: cell {requeued_cell} ") == 2 and "requeued 1 time(s)" in requeued_log
    assert sum(len(cells) for cells in merged_cells(out).values()) == 3  # merged, though one cell failed
    rerun = cli(*argv, cwd=lab)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 cell(s) to run on slurm" in rerun.stdout and "submitted 1 job(s)" in rerun.stdout
    assert merged_cells(out) == shape_cells(sequential)
    for log in (out / ".submitit").glob("*_log.err"):  # every job's log says which cell it ran, first thing
        assert log.read_text().startswith("clipbench: cell "), log


@pytest.mark.real_cluster
@pytest.mark.xdist_group("real-cluster")  # one engine at a time: they share the node's two CPUs
def test_real_slurm_refusals_are_one_sentence_and_leave_nothing_behind(tmp_path):
    """What the partition cannot run is refused before submission; what only sbatch knows to refuse is said in
    one sentence too, and the refused array leaves no pickled cell behind."""
    from clipbench import sweep_slurm

    real_engine("slurm")
    argv = [*REAL_ARGV, "--executor", "slurm", "--time-min", "10"]
    for extra, message in [(["--gpus", "1", "--cpus", "1", "--mem-gb", "1"], "No node of partition 'debug' can run"),
                           (["--cpus", str(4 * sweep.available_cores()), "--mem-gb", "1"], "No node of partition"),
                           (["--partition", "nope"], "Slurm has no partition 'nope'")]:
        refused = cli(*argv, *extra, cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    submitit = _engine("submitit")
    folder = tmp_path / ".submitit"
    folder.mkdir()
    executor = submitit.AutoExecutor(folder=folder)
    executor.update_parameters(timeout_min=10, slurm_partition="nope")
    for cells in ([("zeroshot", "shape", 1)], [("zeroshot", "shape", 1), ("zeroshot", "shape", 2)]):
        with pytest.raises(ClipbenchError, match=r"Slurm refused the jobs \(.*[Ii]nvalid partition.*\); nothing was "
                                                 "submitted"):
            sweep_slurm.submit(executor, cells, {}, sweep.SweepOptions(executor="slurm"), folder)
        assert list(folder.iterdir()) == []


def ray_worker_in_a_cell(marker: str, timeout: float = 300) -> int:
    """The pid of a Ray worker running a cell of this test (its environment holds ``marker``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::run_cell_task") \
                        and marker.encode() in (proc / "environ").read_bytes():
                    return int(proc.name)
            except (OSError, ValueError):
                continue
        time.sleep(0.2)
    pytest.fail(f"no Ray worker started a cell within {timeout} s")


@pytest.mark.real_cluster
@pytest.mark.xdist_group("real-cluster")  # one engine at a time: they share the node's two CPUs
def test_a_real_ray_sweep_from_beside_a_clone_gets_the_drivers_settings_and_survives_a_killed_worker(
        sequential, tmp_path):
    """A Ray head started elsewhere: the workers import the installed package (not the clone beside the driver),
    run with the driver's CLIPBENCH_* settings (a cache folder the head never heard of), and a worker killed
    mid-cell costs only a retry; the same command again runs nothing and the merged numbers are the sequential's."""
    address = real_engine("ray")
    lab = lab_folder(tmp_path)
    argv = [*REAL_ARGV, "--executor", "ray", "--ray-address", address]
    with running(cli(*argv, cwd=lab, wait=False)) as driver:
        # found by the driver's setting in its environment: the head was started before this test chose it
        os.kill(ray_worker_in_a_cell(f"CLIPBENCH_CACHE_DIR={os.environ['CLIPBENCH_CACHE_DIR']}"), signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, (stdout, stderr)
    assert stdout.count("cell ") >= 4 and "Traceback" not in stderr
    rerun = cli(*argv, cwd=lab)
    assert rerun.returncode == 0 and "0 cell(s) to run on ray" in rerun.stdout, rerun.stderr
    assert merged_cells(lab / "out") == shape_cells(sequential)


@pytest.mark.parametrize("engine, module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_engine_names_the_install_command_that_works_for_this_install(monkeypatch, engine, module):
    """A clone installed with ``pip install -e .`` cannot ``pip install 'clipbench[ray]'`` (that fetches another
    clipbench from the index): the hint is the one extras.install_command gives for this installation."""
    import importlib
    import sys

    from clipbench.extras import install_command

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(ClipbenchError) as caught:
        importlib.import_module(f"clipbench.sweep_{engine}").run({"out_dir": "never-made"}, [], sweep.SweepOptions(),
                                                                  None, None)
    assert str(caught.value).endswith(f"{install_command(engine)}."), caught.value


def test_a_plugin_executor_gets_the_pending_cells_and_its_options_and_the_runs_merge(tmp_path):
    """A third-party executor registers like a method; the driver hands it the cells still missing and its
    --executor-option values, it computes them with run_cells, and the run's files merge as for any engine."""
    from clipbench import hookimpl
    from clipbench.commands.run import sweep_options

    seen = {}

    def run(fields, cells, options, report, log, keys=None):
        seen.update(cells=list(cells), extra=dict(options.extra))
        for cell in cells:
            sweep.run_cells(fields, [cell])
            report(cell)

    class InProcess:
        @hookimpl
        def clipbench_register_executors(self, register):
            register(sweep.Executor("in-process", "cells here, for the test", run=run))

    pm = get_plugin_manager(load_entrypoints=False, extra=[InProcess()])
    registry = collect(pm)
    assert registry.owners[("executor", "in-process")] != "built-in"
    request = runner.RunRequest(methods=["zeroshot"], tasks=["shape"], seeds=[1, 2], shots=1, out_dir=tmp_path)
    args = type("Args", (), {"executor": "in-process", "executor_option": [("zone", "b")], "workers": None,
                             "gpus": 0})()
    [path] = sweep.dispatch(dataclasses.replace(request, seeds=[1]), registry, pm, sweep_options(args))
    assert seen == {"cells": [("zeroshot", "shape", 1)], "extra": {"zone": "b"}}
    [path] = sweep.dispatch(request, registry, pm, sweep_options(args))
    assert seen["cells"] == [("zeroshot", "shape", 2)]  # only what is missing
    assert [c["seed"] for c in results.load_result(path)["cells"]] == [1, 2]
    with pytest.raises(ClipbenchError, match="Unknown executor 'in-proces'. Did you mean: in-process"):
        sweep.dispatch(request, registry, pm, sweep.SweepOptions(executor="in-proces"))


def test_workers_where_no_executor_reads_them_is_refused_before_any_work(registry):
    """`--workers 1 --executor sequential` would run as if the flag were not there: said, never ignored."""
    pm, reg = registry
    refused = "--workers is for --executor auto, local or ray; sequential does not use it"
    with pytest.raises(ClipbenchError, match=refused):
        sweep.check_options(sweep.SweepOptions(executor="sequential", workers=1), reg)
    for name in ("auto", "local"):
        assert sweep.check_options(sweep.SweepOptions(executor=name, workers=1), reg).name == name


def test_auto_says_when_it_runs_fewer_cells_at_once_than_workers_asked(monkeypatch):
    """`--workers 8` on 2 cores under auto is capped as under local, and the log says so rather than staying quiet."""
    started, lines = _dispatch_forty_cells_on_two_cores(monkeypatch, sweep.SweepOptions(executor="auto", workers=8))
    assert started == [2]
    assert any(line.startswith("--workers 8 capped at 2: one cell per core (2 here)") for line in lines), lines
