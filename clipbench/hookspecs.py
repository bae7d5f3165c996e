"""The clipbench plugin contract: every hook a plugin may implement.

A plugin is any module or object with functions named like these hooks and
decorated with ``clipbench.hookimpl``.  Built-in methods and suites are plugins
registered through exactly the same hooks as third-party ones, which are found
through the ``clipbench`` entry-point group::

    [project.entry-points.clipbench]
    l2sp = "clipbench_l2sp"

Registration hooks hand you a ``register`` callback instead of asking for a
return value, so clipbench keeps control of names: a clash raises a clear error
naming both plugins.  Every hook is called through pluggy, so ``tryfirst`` /
``trylast`` and hook wrappers work as in pytest.

Reporting hooks (``clipbench_run_*``, ``clipbench_cell_finished``,
``clipbench_epoch_finished``) are for trackers and loggers: they are called for
every plugin, their return values are ignored, and the records they receive are
read-only views (mutating one raises ``TypeError``; ``json.dumps`` works on them).
A *run* is one method on one suite with one model and setting: one result file.
A command with three methods runs three runs, one after the other.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("clipbench")
hookimpl = pluggy.HookimplMarker("clipbench")


@hookspec
def clipbench_register_methods(register: Callable) -> None:
    """Contribute fine-tuning methods.

    Call ``register(method)`` once per method, where ``method`` is an object
    (usually an instance of a :class:`clipbench.method.Method` subclass) with:

    - ``name``: the name users type after ``--method`` (lowercase, dashes);
    - ``citation``: the paper (authors, title, venue or arXiv id);
    - ``config_class``: a dataclass whose defaults are the paper's hyper-parameters;
    - ``adapt(model, fewshot, task, config, ctx) -> Adapted``: fine-tune a copy
      of ``model`` (a :class:`clipbench.models.ClipModel` the method owns and
      may modify) on ``fewshot`` for ``task`` and return the adapted model.

    A method never reads files, parses arguments or prints; it reports only
    through ``ctx`` (``ctx.progress``, ``ctx.epoch_finished``).
    """


@hookspec
def clipbench_register_suites(register: Callable) -> None:
    """Contribute suites (lists of tasks with shifts and forgetting probes).

    Call ``register(suite)`` with a :class:`clipbench.tasks.Suite`.  Building a
    suite must be cheap: datasets are loaded lazily, when a run first touches
    them, so that ``clipbench list`` never reads any data.

    A suite on datasets under ``--data`` gives the suite a
    :class:`clipbench.tasks.DataRoot` and reads from it inside its lazy image
    sets; tasks whose class names live in the data leave ``classnames`` empty
    and pass ``classnames_from``.  ``clipbench.suites.real`` builds the
    built-in real-data suites exactly this way.
    """


@hookspec
def clipbench_register_models(register: Callable) -> None:
    """Contribute model sources beyond open_clip's own names.

    Call ``register(name, loader, description)`` where ``loader(pretrained,
    checkpoint, device) -> ClipModel`` builds the model.  clipbench itself
    registers the embedded ``clipbench-tiny`` model this way.
    """


@hookspec
def clipbench_register_executors(register: Callable) -> None:
    """Contribute executors: ways to compute a run's cells (``clipbench run --executor NAME``).

    Call ``register(executor)`` with a :class:`clipbench.sweep.Executor`: its
    ``name``, a one-line ``help``, the ``flags`` it reads (argparse declarations;
    a third-party executor's values reach it as ``options.extra`` from
    ``--executor-option KEY=VALUE``), an optional ``check(options)`` that refuses
    what it can never run before any work, and ``run(fields, cells, options,
    report, log, keys)``, which computes each cell by calling
    :func:`clipbench.sweep.run_cells` ``(fields, [cell])`` somewhere (a job, a
    task, a pod) and calls ``report(cell)`` as each finishes.  The cells' files
    merge into one run whatever computed them.  clipbench registers
    ``sequential``, ``auto`` and ``local`` (:mod:`clipbench.sweep`), ``slurm`` and
    ``ray`` (:mod:`clipbench.sweep_slurm`, :mod:`clipbench.sweep_ray`) this way.
    """


@hookspec
def clipbench_run_started(run: dict) -> None:
    """Called once per run, before its first cell is computed (also when resuming a run whose cells are
    partly done: ``run["cells"]`` holds those), with the run's config and provenance.

    Use it to open an experiment in an external tracker.
    """


@hookspec
def clipbench_epoch_finished(run: dict, task: str, seed: int, epoch: int, epochs: int, loss: float) -> None:
    """Called after every epoch of a method that trains, with the mean training loss of that epoch: a
    tracker's loss curve.  The shared loops (``clipbench.finetune``, ``clipbench.training.train_steps``)
    report for the method; a method with a loop of its own calls ``ctx.epoch_finished(epoch, epochs, loss)``,
    which calls this hook.

    An epoch is one pass over the support set, also in methods without epochs: a full-batch step (the linear
    probe) or a round over the classes (the kNN adapter) is one.  Candidates fitted one after the other to be
    chosen on validation report their epochs in turn, numbered on (``epochs`` counts them all); candidates
    trained side by side report their summed loss.  A method that trains nothing reports no epoch."""


@hookspec
def clipbench_cell_finished(run: dict, cell: dict) -> None:
    """Called after each (method, task, seed) cell with that cell's result record.

    The record is exactly what is written to the result file (see
    ``clipbench.results``), so a logger plugin sees the same numbers.
    """


@hookspec
def clipbench_run_finished(run: dict, summary: dict) -> None:
    """Called once when every cell of a run is done, with the merged result (``run``: what the result file
    holds) and its summary (``clipbench.scoring.summarise``)."""


@hookspec
def clipbench_run_failed(run: dict, error: str) -> None:
    """Called when a run stops on an error (a cell that raised, a disk that filled) before the error
    reaches the user; ``error`` is its one-line message.  Cells finished before it are saved.  Not called
    on Ctrl-C."""
