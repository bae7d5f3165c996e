"""A run request made ready once: every name checked, the model loaded, each method's run and its cells.

:func:`prepare` is the one setup every executor shares: the sequential loop of
:mod:`clipbench.runner`, the sweep driver that hands cells to engines, and each
worker that runs some of those cells (it prepares the same request once per
process and runs cells of it; it never plans per cell).  Everything that can be
wrong with a request is raised here, before any training.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from clipbench import protocol, results, submission, tuning
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel
from clipbench.outline import Outline, outline
from clipbench.protocol import tell
from clipbench.plugins import Registry
from clipbench.request import RunRequest, attach_data, check_out_dir, evaluator_for, load_for, resolve_device
from clipbench.store import RunStore
from clipbench.tasks import Suite, Task

Cell = tuple[str, str, int]  # (method, task, seed): the unit every executor runs


@dataclass
class Plan:
    """A validated request: every name resolved, every error raised before any work."""

    suite: Suite
    tasks: list[Task]
    methods: list[tuple[object, object, dict]]  # (method, config, config-as-dict)
    device: torch.device


def plan(request: RunRequest, registry: Registry) -> Plan:
    """Resolve and check every name and value of ``request`` (nothing is loaded or written)."""
    suite = registry.suite(request.suite)
    if request.probes is not None:
        suite = suite.with_probes(request.probes)
    tasks = suite.selected(request.tasks)
    for task in tasks:
        for probe in task.probes:
            suite.task(probe)
    if not request.methods:
        raise ClipbenchError(f"Name at least one --method. Known methods: {', '.join(sorted(registry.methods))}.")
    problem = results.evaluation_seed_problem(request.seeds)
    if problem:
        raise ClipbenchError(f"{problem[0].upper()}{problem[1:]}.")
    if request.batch_size is not None and (isinstance(request.batch_size, bool) or not isinstance(request.batch_size, int)
                                           or request.batch_size < 1):
        raise ClipbenchError(f"--batch-size must be a whole number of at least 1, got {request.batch_size!r}.")
    check_out_dir(Path(request.out_dir))
    if request.precision not in ("fp32", "bf16"):
        raise ClipbenchError(f"Unknown precision {request.precision!r}: use fp32 or bf16.")
    for name in request.options:
        if name not in request.methods:
            raise ClipbenchError(f"--option names method {name!r}, which is not among --method "
                                 f"{' '.join(request.methods)}.")
    methods = []
    for name in request.methods:
        method = registry.method(name)
        config = method.make_config(request.options.get(name, {}))
        methods.append((method, config, _config_dict(config)))
    return Plan(suite, tasks, methods, resolve_device(request.device))


def _config_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


@dataclass
class MethodRun:
    """One method's run within a prepared request: its config per task, what tuning chose, its store."""

    method: object
    config_dict: dict
    configs: dict  # task name -> the method's config with that task's tuned values
    tuned: dict
    tuning_provenance: dict | None
    run_config: dict
    store: RunStore


@dataclass
class Prepared:
    """A request ready to run: plan, model (loaded once), its fingerprint, evaluator and each method's run."""

    request: RunRequest
    plan: Plan
    model: ClipModel
    model_fingerprint: str
    evaluator: protocol.Evaluator
    runs: list[MethodRun]

    def run_of(self, method: str) -> MethodRun:
        return next(r for r in self.runs if r.method.name == method)

    def pending(self) -> list[Cell]:
        """The cells not yet in their run's folder, in run order (method, then task, then seed)."""
        out = []
        for run in self.runs:
            done = run.store.done()
            out += [(run.method.name, t.name, s) for t in self.plan.tasks for s in self.request.seeds
                    if (t.name, s) not in done]
        return out

    def provenance(self, run: MethodRun) -> dict:
        """What a run's first writer records: model, versions, device, threads, citation, tuning."""
        device = self.plan.device
        return {
            "model_fingerprint": self.model_fingerprint,
            "data": {},
            "versions": results.package_versions(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "method_citation": run.method.citation,
            "tuning": run.tuning_provenance,
        }


def prepare(request: RunRequest, registry: Registry, reporter=None, model: ClipModel | None = None,
            evaluator: protocol.Evaluator | None = None) -> Prepared:
    """Check ``request``, load its model (unless given), bind its data and find each method's run and tuned
    values; the reporter hears ``planned`` once the names are checked and ``prepared`` once this is done.
    Reads only: no folder is created, so a run that fails next leaves nothing behind."""
    p = plan(request, registry)
    tell(reporter, "planned", Outline.of(request, p))
    if model is None:
        model = load_for(request, p.suite, registry, p.device)
    model.module.eval()
    attach_data(request, p.suite, p.tasks, model)
    for task in p.tasks:  # fail on too few shots before any training
        protocol.sample_fewshot_check(task, request.shots)
    evaluator = evaluator or evaluator_for(request, model)
    if reporter is not None:
        evaluator.reporter = reporter
    model_fp = model.fingerprint()
    tuned_over = p.suite.selected(None) + [t for t in p.tasks if t.name not in p.suite.adapt_on]
    adopt_check = functools.partial(submission.check, complete=False)
    runs = []
    for method, config, config_dict in p.methods:
        tuned, prov = tuned_values(request, p.suite, tuned_over, method, model_fp)
        configs = {t.name: method.make_config({**config_dict, **tuned.get(t.name, {})}) for t in p.tasks}
        run_config = run_config_of(request, p, method, config_dict, tuned, model, model_fp)
        runs.append(MethodRun(method, config_dict, configs, tuned, prov, run_config,
                              RunStore(Path(request.out_dir), run_config, adopt_check=adopt_check)))
    prepared = Prepared(request, p, model, model_fp, evaluator, runs)
    tell(reporter, "prepared", outline(prepared))
    return prepared


def tuned_values(request: RunRequest, suite: Suite, tasks: list[Task], method, model_fp: str) -> tuple[dict, dict | None]:
    """{task: {option: value}} chosen by `clipbench tune` for this run, and the tuning's provenance.

    Values the user set with --option win over tuned ones (and are then not recorded as tuned).
    """
    own = set(request.options.get(method.name, {}))
    if request.tuned is not None:  # re-running a result: exactly the values it recorded
        values = {t.name: dict(request.tuned[t.name]) for t in tasks if request.tuned.get(t.name)}
        return values, ({"source": "given with the run (re-running a result)"} if values else None)
    elif request.defaults:
        return {}, None
    else:
        space = tuning.search_space(method)
        if not space:
            return {}, None
        key = tuning.tune_key(suite.name, method, model_fp, request.shots)
        chosen, prov = {}, {"seeds": list(tuning.TUNING_SEEDS), "budget": tuning.TRIAL_BUDGET, "tasks": {}}
        for folder in tuning.tuned_dirs(request.tuned_dir):  # per task, the first folder that finished it
            found = tuning.load_tuned(key, [folder], method)
            if found is None:
                continue
            path, record = found
            for task, values in tuning.chosen_values(record).items():
                if task not in chosen:
                    chosen[task] = values
                    rec = record["tasks"][task]
                    prov["tasks"][task] = {"file": path.name, "shipped": path.parent == tuning.SHIPPED,
                                           "trials": len(rec["trials"]), "val_accuracy": rec["val_accuracy"],
                                           "at_edge": rec["at_edge"], "seconds": rec["seconds"]}
            prov["granularity"] = record["granularity"]
    values = {t.name: {k: v for k, v in chosen.get(t.name, {}).items() if k not in own} for t in tasks}
    values = {t: v for t, v in values.items() if v}
    if prov.get("tasks"):
        prov["tasks"] = {t: v for t, v in prov["tasks"].items() if t in values}
    return values, (prov if values else None)


def run_config_of(request: RunRequest, p: Plan, method, config_dict: dict, tuned: dict, model: ClipModel,
                  model_fp: str) -> dict:
    """What identifies a run (tasks and seeds are added when cells are merged)."""
    own = sorted(request.options.get(method.name, {}))
    restricted = {"probes": sorted(request.probes)} if request.probes is not None else {}
    return {
        **restricted,  # a run with some probes left out is its own run (and no leaderboard row)
        "method": method.name,
        "method_config": config_dict,
        "options": {k: config_dict[k] for k in own},  # set by hand with --option (neither paper nor tuned)
        "tuned": tuned,
        "suite": p.suite.name,
        "shots": request.shots,
        "model": request.model or p.suite.default_model,
        "architecture": model.name,
        "pretrained": model.pretrained,
        "model_fingerprint": model_fp,
        "precision": request.precision,
    }


def data_fingerprints(suite: Suite, task: Task) -> dict:
    """The fingerprints of every image set a task's reference scores (stored beside the reference)."""
    out = {f"{task.name}/train": task.train.value.fingerprint, f"{task.name}/test": task.test.value.fingerprint}
    for name, lazy in task.shifts.items():
        out[f"{task.name}/{name}"] = lazy.value.fingerprint
    for probe in task.probes:
        out[f"{probe}/test"] = suite.task(probe).test.value.fingerprint
    return out
