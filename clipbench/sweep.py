"""Running a suite's cells on existing engines: worker processes here, Slurm (submitit), Ray.

A suite is a grid of independent (method, task, seed) cells.  The driver
(``clipbench run --executor ...``) finds the cells not yet done, hands each to
an engine as a job, and merges the run folders when they finish.  A job is
:func:`run_cells`: it loads the model once per process and runs its cells
through the same runner as a plain ``clipbench run``, writing one file per cell
(:mod:`clipbench.store`), so jobs on any machine merge into one run, a
preempted or killed job loses only its unfinished cell, and running the same
command again resubmits only what is missing.  The engines are optional extras
(``clipbench[slurm]``, ``clipbench[ray]``); nothing here imports them until asked.
The Slurm engine is :mod:`clipbench.sweep_slurm`, the Ray engine :mod:`clipbench.sweep_ray`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from clipbench.errors import ClipbenchError
from clipbench.hookspecs import hookimpl

if TYPE_CHECKING:
    from clipbench.prepare import Cell


@dataclass
class SweepOptions:
    executor: str = "sequential"
    workers: int | None = None  # local and ray: worker processes (None: DEFAULT_WORKERS, set by dispatch); auto: at
    # most this many cells at once (None: one per core)
    threads: int | None = None  # local: torch threads per worker (None: an equal share of the cores)
    partition: str | None = None  # slurm
    gpus: int = 0  # slurm: GPUs per job; ray: GPUs per cell
    cpus: int = 4  # slurm: CPUs per job
    mem_gb: int = 16  # slurm
    time_min: int = 60  # slurm: time limit of one cell's job
    parallelism: int = 64  # slurm: job-array tasks running at once
    wait: bool = True  # slurm: wait for the jobs (else print how to follow them and return)
    ray_address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"); none: start one here
    extra: dict = field(default_factory=dict)  # a third-party executor's values (--executor-option KEY=VALUE)


@dataclass(frozen=True)
class Flag:
    """A command-line flag an executor reads: ``add_argument(*names, **spec)``; its value reaches the executor as
    the SweepOptions field of that name (built-in flags) or in ``options.extra``."""

    names: tuple[str, ...]
    spec: dict


@dataclass(frozen=True)
class Executor:
    """A way to compute a run's cells, registered through ``clipbench_register_executors`` (see hookspecs).

    ``run(fields, cells, options, report, log, keys)`` computes each cell with :func:`run_cells` somewhere and
    calls ``report(cell)`` as each finishes; None means in this process, one cell after another.
    """

    name: str
    help: str
    run: Callable | None = None
    flags: tuple[Flag, ...] = ()
    check: Callable | None = None  # check(options): refuse what it can never run, before any work


def flag(*names: str, **spec) -> Flag:
    return Flag(tuple(names), spec)


def positive_int(text: str) -> int:
    """A command-line whole number of at least 1 (an argparse type)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


DEFAULT_WORKERS = 2  # local and ray, when --workers is not given
WORKERS = flag("--workers", type=positive_int, default=None,
               help=f"local and ray: parallel workers (default: {DEFAULT_WORKERS}); auto: at most this many cells "
                    "at once, one thread each (default: one per core)")
GPUS = flag("--gpus", type=int, default=0,
            help="slurm: GPUs per job; ray: GPUs per cell, so each cell is scheduled onto its own (default: 0)")


def builtin_executors() -> list[Executor]:
    """This module's executors (the engines' modules register theirs)."""
    return [
        Executor("auto", "on the CPU one cell per core at one thread each (the layout the leaderboard's rows are "
                 "made in, so the numbers match them bit for bit), on a GPU sequential", flags=(WORKERS,)),
        Executor("sequential", "this process, all its threads"),
        Executor("local", "--workers processes here", run=_local, flags=(WORKERS,)),
    ]


@hookimpl
def clipbench_register_executors(register) -> None:
    for executor in builtin_executors():
        register(executor)


def request_fields(request) -> dict:
    """A RunRequest as plain data a job can receive: paths as absolute strings, because a job runs in another
    folder (never the one the sweep was started from, which may hold a checkout that would shadow the package).
    """
    from clipbench import tuning

    out = dataclasses.asdict(request)
    if out.get("tuned_dir") is None:  # `run`'s default, ./tuned, is the driver's folder, not the job's
        out["tuned_dir"] = tuning.tuned_dirs()[0]
    for key in ("out_dir", "data", "tuned_dir"):
        if out.get(key) is not None:
            out[key] = str(Path(out[key]).resolve())
    if out.get("checkpoint") and Path(out["checkpoint"]).exists():  # a local weights file, not a model name
        out["checkpoint"] = str(Path(out["checkpoint"]).resolve())
    return out


def _request(fields: dict):
    """The request a sweep's jobs receive as plain data (:func:`request_fields`), as a RunRequest again."""
    from clipbench.request import RunRequest

    f = dict(fields)
    for key in ("out_dir", "data", "tuned_dir"):
        if f.get(key) is not None:
            f[key] = Path(f[key])
    return RunRequest(**f)


# ------------------------------------------------------------------ what a job runs

_WORKER: dict = {}  # per process: the plugin registry and each request prepared once (model loaded once)


def run_cells(fields: dict, cells: list[Cell], threads: int | None = None) -> list[Cell]:
    """Run ``cells`` of the request ``fields`` in this process; returns the cells it finished.

    The request is prepared once per process (:func:`clipbench.prepare.prepare`: the model loaded, each
    method's run found) and its cells run from it, so the zero-shot scores every cell is measured against are
    computed once per process and image set, as in a sequential run.
    """
    import json

    import torch

    from clipbench import runner
    from clipbench.plugins import collect, get_plugin_manager
    from clipbench.prepare import prepare

    if threads:
        torch.set_num_threads(threads)
    if "registry" not in _WORKER:
        pm = get_plugin_manager()
        _WORKER["pm"], _WORKER["registry"] = pm, collect(pm)
    pm, registry = _WORKER["pm"], _WORKER["registry"]
    key = json.dumps(fields, sort_keys=True, default=str)
    if key not in _WORKER:
        _WORKER[key] = prepare(_request(fields), registry)
    runner.run_prepared(_WORKER[key], pm, cells=[tuple(c) for c in cells])
    return list(cells)


def cell_name(cell: Cell) -> str:
    """How a cell is named in logs and messages: ``method/task/seed``."""
    return "/".join(map(str, cell))


def announce(cells: list[Cell], where: str) -> None:
    """Name the cells a job runs at the top of its log (stdout and stderr), so a log read later says whose it is."""
    import socket
    import sys

    line = f"clipbench: cell {', '.join(map(cell_name, cells))} on {socket.gethostname()} pid {os.getpid()} ({where})"
    for stream in (sys.stdout, sys.stderr):
        print(line, file=stream, flush=True)


# ------------------------------------------------------------------ the driver


def pending(request, registry, reporter=None) -> tuple[list[Cell], list]:
    """The cells of ``request`` not yet in their runs' folders, and those runs' stores (for merging); the
    ``reporter`` hears the plan as a sequential run tells it (what will run, where, what is done, the cache)."""
    from clipbench.prepare import prepare

    prepared = prepare(request, registry, reporter)
    return prepared.pending(), [run.store for run in prepared.runs]


def check_options(options: SweepOptions, registry) -> Executor:
    """The executor ``options`` name, after refusing what it can never run in one sentence, before any work
    (each engine checks its own limits: Slurm asks its partition)."""
    executor = registry.executor(options.executor)
    if isinstance(options.gpus, bool) or not isinstance(options.gpus, int) or options.gpus < 0:
        raise ClipbenchError(f"--gpus must be a whole number of at least 0, got {options.gpus!r}.")
    if options.gpus and GPUS not in executor.flags:
        # in the order their plugins were registered (the registry holds them in pluggy's call order, reversed)
        users = " or ".join(reversed([e.name for e in registry.executors.values() if GPUS in e.flags]))
        raise ClipbenchError(f"--gpus is for --executor {users}; {options.executor} runs on this machine's "
                             "devices (choose one with --device).")
    if options.workers is not None and WORKERS not in executor.flags:
        users = sorted(e.name for e in registry.executors.values() if WORKERS in e.flags)
        raise ClipbenchError(f"--workers is for --executor {', '.join(users[:-1])} or {users[-1]}; "
                             f"{options.executor} does not use it, so it would be ignored.")
    if executor.check is not None:
        executor.check(options)
    return executor


def dispatch(request, registry, pm, options: SweepOptions, reporter=None, log=lambda line: None) -> list[Path]:
    """Run the request's pending cells on the chosen engine, then merge its runs; return the merged files.

    A sweep some of whose cells failed still merges the cells that finished before it says so.
    """
    from clipbench import protocol
    from clipbench.prepare import prepare
    from clipbench.protocol import tell

    reporter = reporter or protocol.SilentReporter()
    executor = check_options(options, registry)
    prepared = prepare(request, registry, reporter)
    cells, stores = prepared.pending(), [run.store for run in prepared.runs]
    total = len(cells)
    asked = options.workers
    if options.executor == "auto":
        options = auto_layout(request, total, options)
        executor = registry.executor(options.executor)
    elif options.workers is None and WORKERS in executor.flags:  # local, ray (and a plugin's): the one default
        asked = DEFAULT_WORKERS
        options = dataclasses.replace(options, workers=asked)
    if options.executor == "local":
        options = dataclasses.replace(options, workers=local_workers(options.workers, total))
        tell(reporter, "parallel", options.workers)
    at_once = options.workers if options.executor == "local" else 1
    if asked is not None and options.executor in ("local", "sequential") and at_once < asked:
        why = ("on a GPU auto runs the cells one after another" if options.threads is None else
               f"one cell per core ({available_cores()} here) and per cell to run ({total}); more would only "
               "compete for the same cores")
        log(f"--workers {asked} capped at {at_once}: {why}")
    if executor.run is None:  # prepared once: this process runs the cells itself
        return _in_process(prepared, pm, reporter, options.threads)
    threads = options.threads or threads_per_worker(options.workers or DEFAULT_WORKERS)
    log(f"{total} cell(s) to run on {options.executor}"
        + (f" with {options.workers} workers at {threads} thread{'s' if threads > 1 else ''} each"
           if options.executor == "local" else ""))
    fields = request_fields(request)
    by_method = {store.config["method"]: store for store in stores}
    finished = []

    def report(cell: Cell) -> None:
        """One progress line / bar tick per finished cell, its numbers read back from its file."""
        from clipbench import results

        method, task, seed = cell
        finished.append(cell)
        path = by_method[method].cell_path(task, seed)
        if path.is_file():
            reporter.cell_finished(len(finished), total, method, results.read_json(path))

    def merge() -> list[Path]:
        return [store.write_merged() for store in stores if store.folder.is_dir() and store.done()]

    if cells:
        # a cell's identity across submissions: its run's folder (the run hash) and the cell
        keys = {c: f"{by_method[c[0]].folder.name}/{c[1]}/{c[2]}" for c in cells}
        try:
            executor.run(fields, cells, options, report, log, keys)
        except ClipbenchError:
            merge()  # the cells that finished are in the merged files too, not only in their folders
            raise
    return merge()


def auto_layout(request, cells: int, options: SweepOptions) -> SweepOptions:
    """How ``--executor auto`` runs ``cells`` pending cells: on the CPU, one thread per cell and as many cells at
    once as there are cores (the layout the board's rows were made in, so the numbers are theirs bit for bit;
    and the fastest for small models, whose kernels gain less from a second thread than from a second cell;
    ``--workers`` lowers how many at once); on a GPU, one cell after another in this process."""
    from clipbench import runner

    if runner.resolve_device(request.device).type != "cpu":
        return dataclasses.replace(options, executor="sequential", threads=None)
    workers = min(options.workers or available_cores(), available_cores(), cells)
    if workers <= 1:
        return dataclasses.replace(options, executor="sequential", threads=1)
    return dataclasses.replace(options, executor="local", workers=workers, threads=1)


def _in_process(prepared, pm, reporter, threads: int | None) -> list[Path]:
    """The prepared request's cells one after another in this process, at ``threads`` torch threads (None:
    torch's default)."""
    import torch

    from clipbench import runner

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return runner.run_prepared(prepared, pm, reporter)
    finally:
        torch.set_num_threads(before)


def pick_cell(queue: list[Cell], own: set, started: set) -> int:
    """Which queued cell a free worker takes: one of a task it has already scored (the zero-shot reference is
    in its memory), else one of a task no worker has started, else the first (its reference is scored again)."""
    for wanted in (lambda t: t in own, lambda t: t not in started):
        for i, cell in enumerate(queue):
            if wanted(cell[1]):
                return i
    return 0


def available_cores() -> int:
    """The cores this process may use (at least one; ``os.cpu_count()`` may be unknown)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """An equal share of the cores this process may use (at least one)."""
    return max(1, available_cores() // max(1, workers))


def local_workers(asked: int, cells: int) -> int:
    """How many worker processes ``--workers asked`` starts for ``cells`` cells: at most one per cell and one
    per core (each cell already uses a core's threads; more processes only compete and load more models)."""
    return max(1, min(asked, cells, available_cores()))


def _local(fields, cells, options, report, log, keys=None) -> None:
    """``--workers`` processes, each with an equal share of this machine's cores and its own single-process
    pool, fed one cell at a time (the load stays balanced to the last cell) and preferably a cell of a task the
    worker has already scored, so each task's zero-shot reference is scored about once, as in a sequential run."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    workers = max(1, options.workers)
    threads = options.threads or threads_per_worker(workers)
    queue = list(cells)
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
             for _ in range(min(workers, len(queue)))]
    own: list[set] = [set() for _ in pools]
    started: set = set()
    running: dict = {}  # future -> (worker, cell)

    def submit(worker: int) -> None:
        cell = queue.pop(pick_cell(queue, own[worker], started))
        own[worker].add(cell[1])
        started.add(cell[1])
        running[pools[worker].submit(run_cells, fields, [cell], threads)] = (worker, cell)

    try:
        for worker in range(len(pools)):
            submit(worker)
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                worker, cell = running.pop(future)
                future.result()  # a failed cell stops the sweep here; the finished ones are saved
                report(cell)
                if queue:
                    submit(worker)
    except BrokenProcessPool:
        raise ClipbenchError("A worker process died (killed, or out of memory) before its cell finished; every "
                             "finished cell is saved. Run the same command again to run only what is missing.") from None
    finally:
        for pool in pools:  # a worker still in a job finishes and saves it
            pool.shutdown(wait=True, cancel_futures=True)
