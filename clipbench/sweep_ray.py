"""The Ray engine of a sweep: each cell a Ray task, on an existing cluster (``--ray-address``) or one started here.

What a worker sees is made explicit instead of inherited.  The driver's clipbench settings (the embedding cache,
the data root, which plugins load, the model hubs' folders) travel in the job's ``runtime_env``: workers of a
cluster started elsewhere never saw the driver's environment.  And the workers run in an empty working
directory: Ray otherwise puts the driver's folder on their import path, where a clone of the repository (a
``clipbench/`` folder) shadows the installed package.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from clipbench.errors import ClipbenchError
from clipbench.hookspecs import hookimpl
from clipbench.sweep import GPUS, WORKERS, Executor, announce, cell_name, flag, run_cells

if TYPE_CHECKING:
    from clipbench.prepare import Cell

# what decides where a cell reads and writes, passed from the driver to every worker
ENV_PREFIXES = ("CLIPBENCH_", "HF_")
ENV_NAMES = ("TORCH_HOME", "XDG_CACHE_HOME")


def worker_env(environ=None) -> dict[str, str]:
    """The driver's variables that a cell depends on (``CLIPBENCH_CACHE_DIR``, ``CLIPBENCH_DATA_DIR``, ...)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}


def run_cell_task(fields: dict, cells: list[Cell], threads: int) -> tuple[list[Cell], list[str]]:
    """What a Ray task runs: the cells, named at the top of the worker's log; returns them and the GPUs it had."""
    import ray

    context = ray.get_runtime_context()
    gpus = [str(g) for g in context.get_accelerator_ids().get("GPU", [])]
    announce(cells, f"Ray task {context.get_task_id()} on node {context.get_node_id()[:12]}"
             + (f", GPU {','.join(gpus)}" if gpus else ""))
    return run_cells(fields, cells, threads), gpus


def cause_lines(exc: Exception, lines: int = 4) -> list[str]:
    """The last lines of a failed task's cause (Ray's error carries the worker's traceback as text)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, ClipbenchError):  # the cell's own sentence (a method that failed, a missing file)
        return [str(cause).splitlines()[0]]
    text = [line.rstrip() for line in str(exc).splitlines() if line.strip()]
    return text[-lines:] or [type(cause).__name__]


def run(fields, cells, options, report, log, keys=None) -> None:
    try:
        import ray
    except ImportError:
        from clipbench.extras import install_command

        raise ClipbenchError(f"--executor ray needs ray: {install_command('ray')}.") from None
    env = {"env_vars": worker_env()}
    started_here = not ray.is_initialized()
    neutral = tempfile.mkdtemp(prefix="clipbench-ray-")  # the workers' working directory: empty, so it shadows nothing
    try:
        if started_here:
            job_env = dict(env, working_dir=neutral)
            quiet = dict(log_to_driver=False, logging_level=logging.WARNING, runtime_env=job_env)
            if options.ray_address:
                ray.init(address=options.ray_address, **quiet)
            else:  # "local": a new cluster here, never one a `ray start` left running on this machine
                ray.init(address="local", num_cpus=max(1, options.workers), include_dashboard=False, **quiet)
        try:
            _run_tasks(ray, fields, cells, options, report, log, env, started_here)
        finally:
            if started_here:
                ray.shutdown()
    finally:
        shutil.rmtree(neutral, ignore_errors=True)


def check_gpus(asked: int, have: float, started_here: bool, log) -> None:
    """Cells asking for more GPUs than the cluster has would wait forever: refused on a cluster this command
    started (it will never grow), said on an existing one (an autoscaler may still add nodes with GPUs)."""
    if asked <= have:
        return
    have_text = f"{int(have) if have == int(have) else have}"
    if started_here:
        raise ClipbenchError(f"--gpus {asked} asks for {asked} GPU(s) per cell, but the Ray cluster started here has "
                             f"{have_text}: Ray would keep the cells waiting forever. Ask for fewer, or connect to a "
                             "cluster with GPUs (--ray-address).")
    log(f"--gpus {asked}: the Ray cluster has {have_text} GPU(s) now, so the cells wait until nodes with enough GPUs "
        "join (an autoscaler may add them); Ctrl-C stops waiting, and finished cells are kept")


def _run_tasks(ray, fields, cells, options, report, log, env: dict, started_here: bool) -> None:
    """The cells as Ray tasks; ``env`` goes with each task unless this command started the job with it."""
    check_gpus(options.gpus, ray.cluster_resources().get("GPU", 0), started_here and not options.ray_address, log)
    # a cell whose worker dies (killed, out of memory) runs again on another: its other cells are on disk
    task = ray.remote(run_cell_task).options(num_cpus=1, num_gpus=options.gpus, max_retries=3,
                                              **({} if started_here else {"runtime_env": env}))
    refs = {task.remote(fields, [cell], 1): cell for cell in cells}
    remaining, failures = list(refs), []
    while remaining:
        ready, remaining = ray.wait(remaining, num_returns=1)
        cell = refs[ready[0]]
        try:
            _, gpus = ray.get(ready[0])
        except Exception as exc:  # a cell's failure: the other cells still run and save
            failures.append("\n".join([f"  {cell_name(cell)}: failed on Ray, its cause ends:"]
                                      + [f"      {line}" for line in cause_lines(exc)]))
            continue
        if gpus:
            log(f"{cell_name(cell)} ran on GPU {', '.join(gpus)}")
        report(cell)
    if failures:
        raise ClipbenchError(f"{len(failures)} of {len(cells)} cell(s) failed on Ray; every cell that finished is "
                             "saved and merged (the workers' logs are in Ray's session folder, `ray logs`). Run the "
                             "same command again to run only what is missing.\n" + "\n".join(failures))


FLAGS = (WORKERS, GPUS,
         flag("--ray-address", default=None,
              help="ray: address of an existing cluster (e.g. auto); default: start one on this machine"))


@hookimpl
def clipbench_register_executors(register) -> None:
    register(Executor("ray", "Ray tasks (clipbench[ray])", run=run, flags=FLAGS))
