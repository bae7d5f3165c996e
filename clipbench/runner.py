"""The sequential executor: a prepared run's cells one after another in this process, saving after each.

Between the CLI and the protocol: :func:`clipbench.prepare.prepare` checks the
request, loads the model once and finds each method's run (resuming from what
its folder holds); this module runs the cells, writes the run's files
atomically after every cell and calls the reporting hooks.  The sweep's
workers run their cells of a prepared run through :func:`run_prepared` too.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pluggy

from clipbench import protocol, scoring
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel
from clipbench.plugins import Registry, frozen
from clipbench.prepare import Cell, MethodRun, Plan, Prepared, data_fingerprints, plan, prepare, run_config_of, tuned_values
from clipbench.request import (RunRequest, attach_data, check_out_dir, evaluator_for, io_remedy, load_for,
                               resolve_device)

# The setup steps live in clipbench.request and clipbench.prepare; their names stay importable from here
# for scripts and plugins written against them.
__all__ = ["RunRequest", "Plan", "plan", "prepare", "execute", "run_prepared", "load_for", "attach_data",
           "resolve_device", "check_out_dir", "evaluator_for", "tuned_values", "run_config_of", "io_remedy",
           "guarded_io"]


def execute(request: RunRequest, registry: Registry, pm: pluggy.PluginManager,
            reporter: protocol.Reporter | None = None, model: ClipModel | None = None,
            evaluator: protocol.Evaluator | None = None) -> list[Path]:
    """Run every (method, task, seed) cell not already in its run's folder; return the merged result files.

    ``model`` is the already loaded model and ``evaluator`` one bound to it (a process running many requests
    loads the model once and keeps the zero-shot scores it has computed).
    """
    reporter = reporter or protocol.SilentReporter()
    return run_prepared(prepare(request, registry, reporter, model, evaluator), pm, reporter)


def run_prepared(prepared: Prepared, pm: pluggy.PluginManager, reporter: protocol.Reporter | None = None,
                 cells: list[Cell] | None = None) -> list[Path]:
    """Run ``cells`` of a prepared request (default: every cell of it, skipping those already done) one after
    another; return the merged result file of each run that had cells to run."""
    reporter = reporter or protocol.SilentReporter()
    request, p = prepared.request, prepared.plan
    wanted = None if cells is None else {tuple(c) for c in cells}
    total = len(prepared.runs) * len(p.tasks) * len(request.seeds) if wanted is None else len(wanted)
    counter = itertools.count(1)
    paths = []
    for run in prepared.runs:
        todo = [(t, s) for t in p.tasks for s in request.seeds
                if wanted is None or (run.method.name, t.name, s) in wanted]
        if todo:
            paths.append(_run_method(prepared, run, todo, pm, reporter, counter, total))
    return paths


def _run_method(prepared: Prepared, run: MethodRun, todo: list, pm: pluggy.PluginManager, reporter,
                counter, total: int) -> Path:
    """One method's cells (``todo``: (task, seed) pairs): references first, then each cell saved as it ends."""
    request, p, method, store = prepared.request, prepared.plan, run.method, run.store
    guarded_io(store.merged_path, lambda: store.open(prepared.provenance(run)))
    done = store.done()
    pm.hook.clipbench_run_started(run=frozen(store.merged()))
    try:
        for task in {t.name: t for t, _ in todo}.values():
            if store.reference(task.name) is None:
                protocol.tell(reporter, "reference_started", task.name)
                ref = protocol.zeroshot_reference(prepared.model, p.suite, task, prepared.evaluator,
                                                 prepared.model_fingerprint)
                protocol.tell(reporter, "reference_finished", task.name)
                guarded_io(store.merged_path,
                           lambda: store.put_reference(task.name, ref, data_fingerprints(p.suite, task)))
        for task, seed in todo:
            if (task.name, seed) in done:
                next(counter)
                continue
            protocol.tell(reporter, "cell_started", method.name, task.name, seed)
            run_view = frozen(store.merged())

            def on_epoch(epoch, epochs, loss, task=task.name, seed=seed, run_view=run_view):
                pm.hook.clipbench_epoch_finished(run=run_view, task=task, seed=seed, epoch=epoch,
                                                 epochs=epochs, loss=float(loss))

            cell = protocol.run_cell(method, run.configs[task.name], prepared.model, p.suite, task, seed,
                                     request.shots, prepared.evaluator, p.device, reporter, on_epoch=on_epoch,
                                     shared_fp=prepared.model_fingerprint)
            cell["method"] = method.name
            guarded_io(store.merged_path, lambda: (store.put_cell(cell), store.write_merged()))
            reporter.cell_finished(next(counter), total, method.name, cell)
            pm.hook.clipbench_cell_finished(run=frozen(store.merged()), cell=frozen(cell))
        guarded_io(store.merged_path, store.write_merged)
    except Exception as exc:
        pm.hook.clipbench_run_failed(run=frozen(store.view()), error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    merged = store.merged()
    pm.hook.clipbench_run_finished(run=frozen(merged), summary=frozen(scoring.summary_of(merged)))
    return store.merged_path


def guarded_io(path: Path, write) -> None:
    """Run a write of the run's files; a failing disk is one sentence (what was written before stays whole)."""
    try:
        write()
    except OSError as exc:
        raise ClipbenchError(f"Could not write the result file {path} or its cells ({exc.strerror or exc}); every "
                             f"cell saved before this one is kept. {io_remedy(exc)} and run the same command again "
                             "to resume.") from None
