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

from clipbench.errors import ClipbenchError

EXECUTORS = ("auto", "sequential", "local", "slurm", "ray")


@dataclass
class SweepOptions:
    executor: str = "sequential"
    workers: int = 2  # local: worker processes
    threads: int | None = None  # local: torch threads per worker (None: an equal share of the cores)
    partition: str | None = None  # slurm
    gpus: int = 0  # slurm: GPUs per job; ray: GPUs per cell
    cpus: int = 4  # slurm: CPUs per job
    mem_gb: int = 16  # slurm
    time_min: int = 60  # slurm: time limit of one cell's job
    parallelism: int = 64  # slurm: job-array tasks running at once
    wait: bool = True  # slurm: wait for the jobs (else print how to follow them and return)
    ray_address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"); none: start one here
    extra: dict = field(default_factory=dict)


Cell = tuple[str, str, int]  # (method, task, seed)


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


def _request(fields: dict, cell: Cell):
    """The request of one cell: its method alone, with only that method's ``--option`` values."""
    from clipbench.runner import RunRequest

    method, task, seed = cell
    options = {method: fields["options"][method]} if method in (fields.get("options") or {}) else {}
    f = dict(fields, methods=[method], tasks=[task], seeds=[seed], options=options)
    for key in ("out_dir", "data", "tuned_dir"):
        if f.get(key) is not None:
            f[key] = Path(f[key])
    return RunRequest(**f)


# ------------------------------------------------------------------ what a job runs

_WORKER: dict = {}  # per process: the plugin registry and loaded models, so a worker loads them once


def run_cells(fields: dict, cells: list[Cell], threads: int | None = None) -> list[Cell]:
    """Run ``cells`` of the request ``fields`` in this process; returns the cells it finished.

    A process keeps its model and its evaluator between calls, so the zero-shot scores every cell is
    measured against are computed once per process and image set, as in a sequential run.
    """
    import torch

    from clipbench import runner
    from clipbench.plugins import collect, get_plugin_manager

    if threads:
        torch.set_num_threads(threads)
    if "registry" not in _WORKER:
        pm = get_plugin_manager()
        _WORKER["pm"], _WORKER["registry"] = pm, collect(pm)
    pm, registry = _WORKER["pm"], _WORKER["registry"]
    done = []
    for cell in cells:
        request = _request(fields, cell)
        suite = registry.suite(request.suite)
        key = (request.model, request.pretrained, request.checkpoint, request.device, request.suite)
        if key not in _WORKER:
            _WORKER[key] = runner.load_for(request, suite, registry, runner.resolve_device(request.device))
        evaluator_key = (key, request.batch_size, request.cache, request.precision)
        if evaluator_key not in _WORKER:
            _WORKER[evaluator_key] = runner.evaluator_for(request, _WORKER[key])
        runner.execute(request, registry, pm, model=_WORKER[key], evaluator=_WORKER[evaluator_key])
        done.append(cell)
    return done


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
    from clipbench import runner
    from clipbench.outline import Outline, outline, tell
    from clipbench.store import RunStore

    p = runner.plan(request, registry)
    tell(reporter, "planned", Outline.of(request, p))
    model = runner.load_for(request, p.suite, registry, p.device)
    runner.attach_data(request, p.suite, p.tasks, model)
    for task in p.tasks:
        from clipbench import protocol

        protocol.sample_fewshot_check(task, request.shots)
    model_fp = model.fingerprint()
    tuned_over = p.suite.selected(None) + [t for t in p.tasks if t.name not in p.suite.adapt_on]
    if reporter is not None:
        tell(reporter, "prepared", outline(request, p, model, model_fp, runner.evaluator_for(request, model), tuned_over))
    cells, stores = [], []
    for method, _, config_dict in p.methods:
        tuned, _ = runner.tuned_values(request, p.suite, tuned_over, method, model_fp)
        store = RunStore(Path(request.out_dir), runner.run_config_of(request, p, method, config_dict, tuned, model,
                                                                     model_fp))
        stores.append(store)
        done = store.done() if store.folder.is_dir() else set()
        cells += [(method.name, t.name, s) for t in p.tasks for s in request.seeds if (t.name, s) not in done]
    return cells, stores


def check_options(options: SweepOptions) -> None:
    """Refuse what no engine can run, in one sentence, before any work (the engines check their own limits)."""
    if options.executor not in EXECUTORS:
        raise ClipbenchError(f"Unknown executor {options.executor!r}: use {', '.join(EXECUTORS)}.")
    if isinstance(options.gpus, bool) or not isinstance(options.gpus, int) or options.gpus < 0:
        raise ClipbenchError(f"--gpus must be a whole number of at least 0, got {options.gpus!r}.")
    if options.gpus and options.executor not in ("slurm", "ray"):
        raise ClipbenchError(f"--gpus is for --executor slurm or ray; {options.executor} runs on this machine's "
                             "devices (choose one with --device).")


def _engine(executor: str):
    """The module of an engine run elsewhere (imported only when asked for: each is an optional extra)."""
    import importlib

    return importlib.import_module(f"clipbench.sweep_{executor}")


def execute(request, registry, pm, options: SweepOptions, reporter=None, log=lambda line: None) -> list[Path]:
    """Run the request's pending cells on the chosen engine, then merge its runs; return the merged files.

    A sweep some of whose cells failed still merges the cells that finished before it says so.
    """
    from clipbench import protocol
    from clipbench.outline import tell

    reporter = reporter or protocol.SilentReporter()
    check_options(options)
    if options.executor == "slurm":
        _engine("slurm").check(options)  # the request against the partition, before any work
    cells, stores = pending(request, registry, reporter)
    total = len(cells)
    if options.executor == "auto":
        options = auto_layout(request, total, options)
        if options.executor == "sequential":  # the plan is told already: the runner need not tell it again
            return _in_process(request, registry, pm, _PlanToldAlready(reporter), options.threads)
    if options.executor == "local":
        workers = local_workers(options.workers, total)
        if workers < options.workers:
            log(f"--workers {options.workers} capped at {workers}: one worker per core ({available_cores()} here) "
                f"and per cell to run ({total}); more would only compete for the same cores")
        options = dataclasses.replace(options, workers=workers)
        tell(reporter, "parallel", workers)
    threads = options.threads or threads_per_worker(options.workers)
    log(f"{total} cell(s) to run on {options.executor}"
        + (f" with {options.workers} workers at {threads} thread{'s' if threads > 1 else ''} each"
           if options.executor == "local" else ""))
    fields = request_fields(request)
    by_method = {store.config["method"]: store for store in stores}
    finished = []

    def report(cell: Cell) -> None:
        """One progress line / bar tick per finished cell, its numbers read back from its file."""
        import json

        method, task, seed = cell
        finished.append(cell)
        path = by_method[method].cell_path(task, seed)
        if path.is_file():
            reporter.cell_finished(len(finished), total, method, json.loads(path.read_text()))

    def merge() -> list[Path]:
        return [store.write_merged() for store in stores if store.folder.is_dir() and store.done()]

    if cells:
        # a cell's identity across submissions: its run's folder (the run hash) and the cell
        keys = {c: f"{by_method[c[0]].folder.name}/{c[1]}/{c[2]}" for c in cells}
        run = _local if options.executor == "local" else _engine(options.executor).run
        try:
            run(fields, cells, options, report, log, keys)
        except ClipbenchError:
            merge()  # the cells that finished are in the merged files too, not only in their folders
            raise
    return merge()


def auto_layout(request, cells: int, options: SweepOptions) -> SweepOptions:
    """How ``--executor auto`` runs ``cells`` pending cells: on the CPU, one thread per cell and as many cells at
    once as there are cores (the layout the board's rows were made in, so the numbers are theirs bit for bit;
    and the fastest for small models, whose kernels gain less from a second thread than from a second cell);
    on a GPU, one cell after another in this process."""
    from clipbench import runner

    if runner.resolve_device(request.device).type != "cpu":
        return dataclasses.replace(options, executor="sequential", threads=None)
    workers = min(available_cores(), cells)
    if workers <= 1:
        return dataclasses.replace(options, executor="sequential", threads=1)
    return dataclasses.replace(options, executor="local", workers=workers, threads=1)


class _PlanToldAlready:
    """A reporter that has heard the plan: it skips the runner's second telling and hears everything else."""

    planned = prepared = None

    def __init__(self, reporter):
        self._reporter = reporter

    def __getattr__(self, name):
        return getattr(self._reporter, name)


def _in_process(request, registry, pm, reporter, threads: int | None) -> list[Path]:
    """A sequential run in this process, at ``threads`` torch threads (None: torch's default)."""
    import torch

    from clipbench import runner

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return runner.execute(request, registry, pm, reporter)
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
