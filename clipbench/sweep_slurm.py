"""The Slurm engine of a sweep (through submitit): one job per cell, checked against the partition before it is
submitted, then watched through Slurm's own queue until every job has ended.

submitit's own waiting asks ``sacct``, which a cluster without accounting (no slurmdbd, common in small labs)
cannot answer: its jobs then look unfinished forever, a killed job is waited for forever, and a re-run cannot
see which cells are still queued.  Here ``squeue`` is asked first (it lists pending and running jobs, and ended
ones for a few minutes after), ``sacct`` only about jobs squeue no longer lists, and a job counts as ended only
once Slurm no longer holds it, so a requeued job (preempted, or signalled before its time limit) is waited for
instead of being read as failed.  Every wait is bounded: a job that left the queue without a result fails after
a grace period, and a Slurm that stops answering ends the wait with a sentence.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clipbench.errors import ClipbenchError
from clipbench.hookspecs import hookimpl
from clipbench.sweep import GPUS, Executor, announce, cell_name, flag, positive_int, run_cells

if TYPE_CHECKING:
    from clipbench.prepare import Cell

SIGNAL_DELAY_S = 90  # submitit's USR2 comes this long before the time limit, so the job can requeue itself
MIN_TIME_MIN = 5  # a shorter limit leaves a job too little time to start before that signal
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                 "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "PREEMPTED", "RESV_DEL_HOLD"}
# reasons a pending job gives when it can never start as asked (the request exceeds what the partition allows)
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidQOS",
                "InvalidAccount", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob", "QOSMaxMemoryPerJob",
                "QOSMaxWallDurationPerJobLimit"}
SUBMITTED = "submitted.json"  # in OUT/.submitit: cell -> job id of its last submission
POLL_S = 5.0  # between two looks at the queue and the result files
ENDED_GRACE_S = 20.0  # a job that left the queue may take this long to show its result on a shared file system
SILENCE_LIMIT_S = 600.0  # Slurm not answering squeue for this long ends the wait (the jobs may still run)
COMMAND_TIMEOUT_S = 60  # one squeue, sacct or sinfo call


class SlurmSilent(Exception):
    """Slurm did not answer (slurmctld down or unreachable); the message is what the command said."""


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    """One Slurm command; a missing command or one that hangs is Slurm not answering."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmSilent(f"{argv[0]} is not installed here") from None
    except subprocess.TimeoutExpired:
        raise SlurmSilent(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S} s") from None


def _said(result: subprocess.CompletedProcess) -> str:
    """The last thing a failed Slurm command said, without its program-name prefix."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return re.sub(r"^\S+: error: ", "", lines[-1]) if lines else f"exit status {result.returncode}"


# ------------------------------------------------------------------ checking a request before any work


@dataclass(frozen=True)
class Node:
    """What one node of a partition offers, as sinfo reports it."""

    partition: str
    cpus: int
    mem_mb: int  # 1 when the node's memory is not configured (then it is not checked)
    gpus: int
    time_limit_min: int | None  # the partition's; None when unlimited
    default: bool  # the partition jobs go to without --partition


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o '%P|%c|%m|%G|%l'`` (one line per node and partition)."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        partition, cpus, mem, gres, limit = parts
        nodes.append(Node(partition.rstrip("*"), _leading_int(cpus), _leading_int(mem), _gpus(gres),
                          _minutes(limit), partition.endswith("*")))
    return nodes


def _leading_int(text: str) -> int:
    match = re.match(r"\d+", text.strip())
    return int(match.group()) if match else 0


def _gpus(gres: str) -> int:
    """GPUs in a node's generic resources: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:1,shard:8``; none is 0."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres):
        fields = re.sub(r"\(.*\)", "", item).split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def _minutes(limit: str) -> int | None:
    """A Slurm time limit (``infinite``, ``30``, ``2:00:00``, ``1-12:00:00``) in whole minutes; None: no limit."""
    limit = limit.strip().lower()
    if limit in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes, seconds = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def check(options, run=_run) -> None:
    """Refuse, in one sentence and before any work, a request the partition can never run: a time limit too
    short for the requeue signal, an unknown partition, more CPUs, memory, GPUs or time than any of its nodes
    offers (Slurm would queue such a job forever, pending with reason PartitionConfig)."""
    if options.time_min < MIN_TIME_MIN:
        raise ClipbenchError(f"--time-min {options.time_min} is too short for Slurm: submitit signals a job "
                             f"{SIGNAL_DELAY_S} s before its time limit so it can requeue itself, which leaves no time "
                             f"to run a cell; ask for at least {MIN_TIME_MIN} minutes.")
    if options.extra.get("cluster") not in (None, "slurm"):  # submitit's debug executor: no Slurm to ask
        return
    try:
        answer = run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l"])
    except SlurmSilent as exc:
        raise ClipbenchError(f"--executor slurm needs a Slurm cluster, but sinfo could not be run ({exc}).") from None
    if answer.returncode != 0:
        raise ClipbenchError(f"--executor slurm needs a Slurm cluster, but sinfo failed ({_said(answer)}).")
    nodes = parse_sinfo(answer.stdout)
    names = sorted({n.partition for n in nodes})
    if options.partition:
        part = [n for n in nodes if n.partition == options.partition]
        if not part:
            raise ClipbenchError(f"Slurm has no partition {options.partition!r}: use one of {', '.join(names)} "
                                 "(`sinfo` lists them).")
    else:
        part = [n for n in nodes if n.default]
        if not part:
            return  # no default partition: sbatch will say so, and that is reported as its refusal
    name = part[0].partition
    fits = [n for n in part if n.cpus >= options.cpus and (n.mem_mb <= 1 or n.mem_mb >= options.mem_gb * 1024)
            and n.gpus >= options.gpus]
    if not fits:
        most = max(part, key=lambda n: (n.gpus >= options.gpus, n.cpus, n.mem_mb))
        have = f"{most.cpus} CPUs" + (f", {most.mem_mb // 1024} GB" if most.mem_mb > 1 else "") + f", {most.gpus} GPUs"
        raise ClipbenchError(f"No node of partition {name!r} can run a job of --cpus {options.cpus} --mem-gb "
                             f"{options.mem_gb} --gpus {options.gpus} (the largest has {have}); Slurm would keep "
                             "it pending forever. Ask for less, or choose another --partition.")
    limit = part[0].time_limit_min
    if limit is not None and options.time_min > limit:
        raise ClipbenchError(f"--time-min {options.time_min} is over the time limit of partition {name!r} ({limit} "
                             "minutes); Slurm would keep the jobs pending forever. Ask for at most that.")


# ------------------------------------------------------------------ what a job runs


class CellJob:
    """A Slurm job running one cell; requeued by submitit when preempted or timed out (its finished cells
    are on disk, so the requeued job redoes at most the cell it was in)."""

    def __call__(self, fields: dict, cells: list[Cell], threads: int | None = None) -> list[Cell]:
        job = os.environ.get("SLURM_JOB_ID", "?")
        if os.environ.get("SLURM_ARRAY_JOB_ID"):
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '?')}"
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        announce(cells, f"Slurm job {job}" + (f", requeued {restarts} time(s)" if restarts != "0" else ""))
        return run_cells(fields, cells, threads)

    def checkpoint(self, fields: dict, cells: list[Cell], threads: int | None = None):
        import submitit

        return submitit.helpers.DelayedSubmission(self, fields, cells, threads)


# ------------------------------------------------------------------ Slurm's view of the jobs


@dataclass(frozen=True)
class JobState:
    state: str  # Slurm's (PENDING, RUNNING, COMPLETED, FAILED, ...), or GONE when Slurm no longer knows the job
    reason: str = ""


class SlurmQueue:
    """Where submitted jobs stand: squeue first, then sacct for jobs squeue no longer lists, while sacct works
    (a cluster without accounting refuses it once, and it is not asked again)."""

    def __init__(self, run=_run):
        self.run = run
        self.accounting: bool | None = None  # unknown until sacct is first needed

    def states(self, job_ids: list[str]) -> dict[str, JobState]:
        """The state of each job id (``123`` or an array task ``123_4``); raises SlurmSilent if squeue fails."""
        if not job_ids:
            return {}
        arrays = sorted({j.split("_")[0] for j in job_ids})
        answer = self.run(["squeue", "-h", "-r", "--states=all", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
        if answer.returncode != 0 and "invalid job id" not in (answer.stderr or "").lower():
            raise SlurmSilent(_said(answer))
        out = {}
        for line in (answer.stdout if answer.returncode == 0 else "").splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in job_ids:
                out[parts[0]] = JobState(parts[1].upper(), "" if parts[2] in ("None", "(null)") else parts[2])
        missing = [j for j in job_ids if j not in out]
        if missing and self.accounting is not False:
            out.update(self._accounted(missing))
        return {j: out.get(j, JobState("GONE")) for j in job_ids}

    def _accounted(self, job_ids: list[str]) -> dict[str, JobState]:
        try:
            answer = self.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j",
                               ",".join(sorted({j.split("_")[0] for j in job_ids}))])
        except SlurmSilent:
            return {}
        if answer.returncode != 0:
            self.accounting = False  # "Slurm accounting storage is disabled": squeue is all there is
            return {}
        self.accounting = True
        out = {}
        for line in answer.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 2 and parts[0] in job_ids and parts[1]:
                out[parts[0]] = JobState(parts[1].split()[0].upper())
        return out


def still_queued(folder: Path, cells: list[Cell], states, keys: dict | None = None) -> dict[Cell, str]:
    """Cells whose last submission is still pending or running on Slurm: resubmitting them would run them twice.

    ``states``: job ids -> {id: JobState} (:meth:`SlurmQueue.states`); ``keys``: each cell's identity across
    runs, as :func:`clipbench.sweep.dispatch` makes them.
    """
    try:
        submitted = json.loads((folder / SUBMITTED).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(submitted, dict):
        return {}
    ids = {cell: submitted.get(_key(cell, keys)) for cell in cells}
    ids = {cell: job for cell, job in ids.items() if isinstance(job, str)}
    if not ids:
        return {}
    try:
        now = states(sorted(set(ids.values())))
    except SlurmSilent as exc:
        raise ClipbenchError(f"Slurm does not answer ({exc}), so it cannot be told which cells are still queued "
                             "from the last submission; run the same command again when it does.") from None
    return {cell: job for cell, job in ids.items() if now.get(job, JobState("GONE")).state in ACTIVE_STATES}


def _key(cell: Cell, keys: dict | None) -> str:
    return (keys or {}).get(cell) or cell_name(cell)


def _record_submitted(folder: Path, jobs, cells: list[Cell], keys: dict | None = None) -> None:
    from clipbench import results

    path = folder / SUBMITTED
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    record.update({_key(c, keys): str(j.job_id) for j, c in zip(jobs, cells)})
    results.write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


# ------------------------------------------------------------------ submitting


def run(fields, cells, options, report, log, keys=None) -> None:
    try:
        import submitit
    except ImportError:
        from clipbench.extras import install_command

        raise ClipbenchError(f"--executor slurm needs submitit: {install_command('slurm')}.") from None
    folder = Path(fields["out_dir"]) / ".submitit"
    folder.mkdir(parents=True, exist_ok=True)
    cluster = options.extra.get("cluster")
    on_slurm = cluster in (None, "slurm")
    queue = SlurmQueue() if on_slurm else None
    queued = still_queued(folder, cells, queue.states, keys) if queue else {}
    if queued:
        log(f"{len(queued)} cell(s) are still queued or running from an earlier submission (jobs "
            f"{', '.join(sorted(set(queued.values()))[:5])}): not submitted again"
            + ("; waiting for them too" if options.wait else ""))
        cells = [c for c in cells if c not in queued]
    earlier = [(submitit.SlurmJob(folder=folder, job_id=job_id), cell) for cell, job_id in queued.items()]
    jobs = []
    if cells:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        params = dict(timeout_min=options.time_min, mem_gb=options.mem_gb, cpus_per_task=options.cpus,
                      slurm_array_parallelism=options.parallelism, name="clipbench",
                      slurm_signal_delay_s=SIGNAL_DELAY_S,
                      # jobs start in their log folder, never in the folder the sweep was started from: a clone
                      # there (a clipbench/ folder) would shadow the installed package
                      slurm_additional_parameters={"chdir": str(folder.resolve())})
        if options.gpus:
            params["gpus_per_node"] = options.gpus
        if options.partition:
            params["slurm_partition"] = options.partition
        executor.update_parameters(**params)
        jobs = submit(executor, cells, fields, options, folder)
        _record_submitted(folder, jobs, cells, keys)
        log(f"submitted {len(jobs)} job(s)" + (f", array {jobs[0].job_id.split('_')[0]}" if jobs else "")
            + f"; logs in {folder}")
    if not options.wait:
        log("not waiting: run the same command again to resubmit what is missing and merge what is done")
        return
    pairs = earlier + list(zip(jobs, cells))
    if queue is None:
        wait_in_process(pairs, report)
    else:
        wait(pairs, queue, report, log)


def submit(executor, cells: list[Cell], fields: dict, options, folder: Path) -> list:
    """Submit one job per cell as an array; a refusal by sbatch is one sentence and leaves no file behind."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    before = set(folder.iterdir())
    try:
        return executor.map_array(CellJob(), [fields] * len(cells), [[c] for c in cells], [options.cpus] * len(cells))
    except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError, OSError) as exc:
        for path in set(folder.iterdir()) - before:  # the pickled cells and the script of the refused array
            if path.suffix == ".pkl" or path.name.startswith(".submission_file_"):
                path.unlink(missing_ok=True)
        said = [re.sub(r"^sbatch: error: (Batch job submission failed: )?", "", line.strip())
                for line in str(exc).splitlines() if line.strip().startswith("sbatch: error:")]
        raise ClipbenchError(f"Slurm refused the jobs ({'; '.join(said) or str(exc).strip().splitlines()[-1]}); "
                             "nothing was submitted. Check --partition, --gpus, --cpus, --mem-gb and --time-min "
                             "against `sinfo`.") from None


# ------------------------------------------------------------------ waiting


def read_outcome(job) -> tuple[str, object] | None:
    """submitit's result file of a job: ("success", cells) or ("error", traceback); None while there is none."""
    path = job.paths.result_pickle
    try:
        with open(path, "rb") as f:
            outcome = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return outcome if isinstance(outcome, tuple) and len(outcome) == 2 else None


def tail(text: str, lines: int = 4) -> list[str]:
    """The last lines of a log or a traceback that say something (not submitit's own signal bookkeeping)."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()
            and not re.match(r"(submitit (INFO|WARNING)|(INFO|WARNING|DEBUG):submitit)", line.strip())]
    return kept[-lines:]


def failure(job, cell: Cell, state: JobState, outcome) -> str:
    """One failed cell for the final message: what Slurm says, the cause's last lines, and where its log is."""
    log_path = job.paths.stderr
    if outcome is not None and outcome[0] == "error":
        cause, said = tail(str(outcome[1])), f"job {job.job_id} failed"
    else:
        try:
            cause = tail(log_path.read_text(errors="replace"))
        except OSError:
            cause = []
        ended = "no longer known to Slurm" if state.state == "GONE" else state.state
        said = f"job {job.job_id} ended without a result ({ended}{', ' + state.reason if state.reason else ''})"
    lines = [f"  {cell_name(cell)}: {said}" + (", its log ends:" if cause else "; its log is empty")]
    lines += [f"      {line}" for line in cause]
    lines.append(f"    log: {log_path}")
    return "\n".join(lines)


def queue_line(states: dict[str, JobState], done: int, failed: int) -> str:
    """The queue at a glance: how many jobs run, wait (and why) and are done."""
    counts = Counter(s.state for s in states.values() if s.state != "PENDING")
    pending = Counter(s.reason for s in states.values() if s.state == "PENDING")
    parts = [f"{n} {state.lower()}" for state, n in sorted(counts.items())]
    parts += [f"{n} pending" + (f" ({reason})" if reason else "") for reason, n in sorted(pending.items())]
    parts += [f"{done} done"] + ([f"{failed} failed"] if failed else [])
    line = "slurm: " + ", ".join(parts)
    stuck = sorted(set(pending) & NEVER_STARTS)
    if stuck:
        line += (f" - {', '.join(stuck)}: Slurm will not start these jobs as asked; cancel them (scancel) and run "
                 "again with a request the partition allows")
    return line


def wait(pairs: list, queue: SlurmQueue, report, log, clock=time.monotonic, sleep=time.sleep) -> None:
    """Wait for (job, cell) pairs until each has ended, printing the queue's state whenever it changes.

    A job has succeeded as soon as its result says so; otherwise it has ended only when Slurm no longer holds
    it (a requeued job is pending again, and its earlier error, if any, is not its last word), and a job that
    ended without a result is failed after ``ENDED_GRACE_S``.  Raises one message naming every failed cell.
    """
    waiting = {str(job.job_id): (job, cell) for job, cell in pairs}
    failures: list[str] = []
    ended_at: dict[str, float] = {}
    silent_since = None
    last_line = ""
    done = 0
    while waiting:
        for job_id, (job, cell) in list(waiting.items()):
            outcome = read_outcome(job)
            if outcome is not None and outcome[0] == "success":
                del waiting[job_id]
                done += 1
                report(cell)
        if not waiting:
            break
        try:
            states = queue.states(sorted(waiting))
            silent_since = None
        except SlurmSilent as exc:
            silent_since = clock() if silent_since is None else silent_since
            if clock() - silent_since >= SILENCE_LIMIT_S:
                raise ClipbenchError(f"Slurm has not answered squeue for {SILENCE_LIMIT_S / 60:.0f} minutes ({exc}); "
                                     f"its {len(waiting)} job(s) may still be running. Run the same command again "
                                     "later: it merges what finished and resubmits only what is missing.") from None
            line = f"slurm: squeue does not answer ({exc}); still waiting"
            if line != last_line:
                log(line)
                last_line = line
            sleep(POLL_S)
            continue
        for job_id, (job, cell) in list(waiting.items()):
            state = states.get(job_id, JobState("GONE"))
            if state.state in ACTIVE_STATES:
                ended_at.pop(job_id, None)
                continue
            outcome = read_outcome(job)  # Slurm is done with it: its result, if any, is final
            if outcome is not None and outcome[0] == "success":
                done += 1
                report(cell)
            elif outcome is not None or clock() - ended_at.setdefault(job_id, clock()) >= ENDED_GRACE_S:
                failures.append(failure(job, cell, state, outcome))
            else:
                continue  # its result may still be on its way
            del waiting[job_id]
        line = queue_line({j: states.get(j, JobState("GONE")) for j in waiting}, done, len(failures))
        if line != last_line:
            log(line)
            last_line = line
        if waiting:
            sleep(POLL_S)
    if failures:
        raise ClipbenchError(f"{len(failures)} of {len(pairs)} cell job(s) failed; every cell that finished is "
                             "saved and merged. Run the same command again to resubmit only what is missing.\n"
                             + "\n".join(failures))


def wait_in_process(pairs: list, report) -> None:
    """submitit's debug executor runs each job in this process when its result is asked for."""
    failures = []
    for job, cell in pairs:
        try:
            job.result()
        except Exception as exc:  # the others still run and save
            last = (str(exc).strip().splitlines() or [""])[-1]
            failures.append(f"  {cell_name(cell)}: {type(exc).__name__}" + (f": {last}" if last else ""))
            continue
        report(cell)
    if failures:
        raise ClipbenchError(f"{len(failures)} of {len(pairs)} cell job(s) failed; every cell that finished is "
                             "saved. Run the same command again to run only what is missing.\n" + "\n".join(failures))


FLAGS = (
    flag("--partition", default=None, help="slurm: partition"),
    GPUS,
    flag("--cpus", type=positive_int, default=4, help="slurm: CPUs per job (default: 4)"),
    flag("--mem-gb", type=positive_int, default=16, help="slurm: memory per job (default: 16)"),
    flag("--time-min", type=positive_int, default=60,
         help="slurm: time limit per cell job, at least 5: a job is signalled 90 s before it to requeue itself "
              "(default: 60)"),
    flag("--parallelism", type=positive_int, default=64, help="slurm: array jobs running at once (default: 64)"),
    flag("--no-wait", dest="wait", action="store_false",
         help="slurm: submit and return; run the same command later to merge and resubmit what is missing"),
)


@hookimpl
def clipbench_register_executors(register) -> None:
    register(Executor("slurm", "one job per cell through submitit (clipbench[slurm])", run=run, flags=FLAGS,
                      check=check))
