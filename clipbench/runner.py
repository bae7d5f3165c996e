"""Executes a run: validate everything up front, then one cell at a time, saving after each.

Between the CLI and the protocol: it resolves names through the plugin
registry, loads the model once, resumes from an existing result file, writes
the file atomically after every cell and calls the reporting hooks.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pluggy
import torch

from clipbench import protocol, results, tuning
from clipbench.cache import EmbeddingCache
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel, load_model
from clipbench.outline import Outline, outline, tell
from clipbench.plugins import Registry, frozen
from clipbench.store import RunStore
from clipbench.tasks import Suite, Task, default_data_dir


@dataclass
class RunRequest:
    methods: list[str]
    suite: str = "default"
    tasks: list[str] = field(default_factory=list)
    shots: int = 16
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    out_dir: Path = Path("results")
    options: dict[str, dict] = field(default_factory=dict)  # method -> {option: value}
    batch_size: int | None = None  # evaluation batch; None: protocol.default_batch_size of the device
    cache: bool = True
    precision: str = "fp32"
    data: Path | None = None  # root of real datasets (suites on real data); default $CLIPBENCH_DATA_DIR
    download: bool = False  # let torchvision fetch datasets it knows how to fetch
    defaults: bool = False  # the paper's hyper-parameters, ignoring any tuned config
    tuned_dir: Path | None = None  # where `clipbench tune` wrote its choices (default ./tuned, then the shipped)
    tuned: dict[str, dict] | None = None  # explicit per-task tuned values (re-running a result: verify)
    probes: list[str] | None = None  # only these probes (a forgetting suite with some probe datasets absent)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ClipbenchError(f"Unknown device {device!r}: use auto, cpu, cuda or cuda:N.")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device[5:]) if ":" in device else 0
        if index >= count:
            raise ClipbenchError(f"--device {device} was asked for, but torch sees "
                                 f"{count or 'no'} CUDA device{'s' if count != 1 else ''}. Use --device cpu.")
    return torch.device(device)


def load_for(request: RunRequest, suite: Suite, registry: Registry, device: torch.device) -> ClipModel:
    name = request.model or suite.default_model
    pretrained = request.pretrained
    if pretrained is None and not request.checkpoint and name == suite.default_model:
        pretrained = suite.default_pretrained
    source = registry.models.get(name)
    if source is not None:
        return source.loader(pretrained=pretrained, checkpoint=request.checkpoint, device=str(device))
    return load_model(name, pretrained, request.checkpoint, str(device))


def attach_data(request: RunRequest, suite: Suite, tasks: list[Task], model: ClipModel, probes: bool = True) -> None:
    """Point a real-data suite at ``--data`` and read the class names of every task the run uses.

    Called after the model loads (its input size is the size images are decoded
    to), before any training, so a missing dataset is reported before work starts.
    """
    suite.bind(request.data or default_data_dir(), request.download, model.image_size)
    for task in tasks:
        task.resolve()
        for probe in task.probes if probes else ():
            suite.task(probe).resolve()


@dataclass
class Plan:
    """A validated request: every name resolved, every error raised before any work."""

    suite: Suite
    tasks: list[Task]
    methods: list[tuple[object, object, dict]]  # (method, config, config-as-dict)
    device: torch.device


def plan(request: RunRequest, registry: Registry) -> Plan:
    suite = registry.suite(request.suite)
    if request.probes is not None:
        suite = suite.with_probes(request.probes)
    tasks = suite.selected(request.tasks)
    for task in tasks:
        for probe in task.probes:
            suite.task(probe)
    if not request.methods:
        raise ClipbenchError(f"Name at least one --method. Known methods: {', '.join(sorted(registry.methods))}.")
    if not request.seeds:
        raise ClipbenchError("--seeds must name at least one seed.")
    bad = [s for s in request.seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= results.MAX_SEED]
    if bad:
        raise ClipbenchError(f"Seeds are whole numbers from 0 to {results.MAX_SEED}, got {bad[0]!r}.")
    if len(set(request.seeds)) != len(request.seeds):
        raise ClipbenchError("A seed is named twice in --seeds; each seed runs once.")
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
    reserved = sorted(set(request.seeds) & set(tuning.TUNING_SEEDS))
    if reserved:
        raise ClipbenchError(f"Seed {reserved[0]} is one of the tuning seeds {', '.join(map(str, tuning.TUNING_SEEDS))}, "
                             "on which hyper-parameters are chosen; evaluate on other seeds.")
    methods = []
    for name in request.methods:
        method = registry.method(name)
        config = method.make_config(request.options.get(name, {}))
        methods.append((method, config, _config_dict(config)))
    return Plan(suite, tasks, methods, resolve_device(request.device))


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
        key = tuning.TuneKey(suite.name, method.name, model_fp, request.shots, tuning.space_hash(space))
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


def check_out_dir(out: Path) -> None:
    """--out must be (or be creatable as) a folder this process can write: said before any work starts."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == out else f"is under {probe}, which is a file"
        raise ClipbenchError(f"--out {out} {where}: pass a folder for the result files.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ClipbenchError(f"--out {out} cannot be written (no write permission on {probe}): "
                             "pass a folder you can write to.")


def _config_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def evaluator_for(request: RunRequest, model: ClipModel) -> protocol.Evaluator:
    """The evaluator a run scores with, bound to the pretrained ``model`` (its embeddings may be cached)."""
    evaluator = protocol.Evaluator(batch_size=request.batch_size, cache=EmbeddingCache() if request.cache else None,
                                   precision=request.precision)
    evaluator.bind(model)
    return evaluator


def execute(request: RunRequest, registry: Registry, pm: pluggy.PluginManager,
            reporter: protocol.Reporter | None = None, model: ClipModel | None = None,
            evaluator: protocol.Evaluator | None = None) -> list[Path]:
    """Run every (method, task, seed) cell not already in its run's folder; return the merged result files.

    ``model`` is the already loaded model and ``evaluator`` one bound to it (a worker running many cells
    loads the model once and keeps the zero-shot scores it has computed).
    """
    reporter = reporter or protocol.SilentReporter()
    p = plan(request, registry)
    tell(reporter, "planned", Outline.of(request, p))
    if model is None:
        model = load_for(request, p.suite, registry, p.device)
    model.module.eval()
    attach_data(request, p.suite, p.tasks, model)
    for task in p.tasks:  # fail on too few shots before any training
        protocol.sample_fewshot_check(task, request.shots)
    evaluator = evaluator or evaluator_for(request, model)
    evaluator.reporter = reporter
    model_fp = model.fingerprint()
    results.remove_stale_temporaries(Path(request.out_dir), "*.json.*.tmp")
    paths = []
    total_cells = len(p.methods) * len(p.tasks) * len(request.seeds)
    finished = 0
    tuned_over = p.suite.selected(None) + [t for t in p.tasks if t.name not in p.suite.adapt_on]
    tell(reporter, "prepared", outline(request, p, model, model_fp, evaluator, tuned_over))
    for method, config, config_dict in p.methods:
        tuned, tuning_prov = tuned_values(request, p.suite, tuned_over, method, model_fp)
        configs = {t.name: method.make_config({**config_dict, **tuned.get(t.name, {})}) for t in p.tasks}
        run_config = run_config_of(request, p, method, config_dict, tuned, model, model_fp)
        store = RunStore(Path(request.out_dir), run_config)
        guarded_io(store.merged_path, lambda: store.open(provenance(model_fp, p, method, p.device, tuning_prov)))
        done = store.done()
        pm.hook.clipbench_run_started(run=frozen(store.merged()))
        try:
            for task in p.tasks:
                if store.reference(task.name) is None:
                    tell(reporter, "reference_started", task.name)
                    ref = protocol.zeroshot_reference(model, p.suite, task, evaluator)
                    tell(reporter, "reference_finished", task.name)
                    guarded_io(store.merged_path,
                               lambda: store.put_reference(task.name, ref, data_fingerprints(p.suite, task)))
            for task in p.tasks:
                for seed in request.seeds:
                    if (task.name, seed) in done:
                        finished += 1
                        continue
                    tell(reporter, "cell_started", method.name, task.name, seed)
                    run_view = frozen(store.merged())

                    def on_epoch(epoch, epochs, loss, task=task.name, seed=seed, run_view=run_view):
                        pm.hook.clipbench_epoch_finished(run=run_view, task=task, seed=seed, epoch=epoch,
                                                         epochs=epochs, loss=float(loss))

                    cell = protocol.run_cell(method, configs[task.name], model, p.suite, task, seed, request.shots,
                                             evaluator, p.device, reporter, on_epoch=on_epoch)
                    cell["method"] = method.name
                    guarded_io(store.merged_path, lambda: (store.put_cell(cell), store.write_merged()))
                    finished += 1
                    reporter.cell_finished(finished, total_cells, method.name, cell)
                    pm.hook.clipbench_cell_finished(run=frozen(store.merged()), cell=frozen(cell))
            guarded_io(store.merged_path, store.write_merged)
        except Exception as exc:
            try:
                view = frozen(store.merged())
            except Exception:  # the run's files may be what failed: trackers still hear of it
                view = frozen({"config": run_config, "config_hash": results.config_hash(run_config), "cells": []})
            pm.hook.clipbench_run_failed(run=view, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        merged = results.load_result(store.merged_path)
        pm.hook.clipbench_run_finished(run=frozen(merged), summary=frozen(merged["summary"]))
        paths.append(store.merged_path)
    return paths


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


def guarded_io(path: Path, write) -> None:
    """Run a write of the run's files; a failing disk is one sentence (what was written before stays whole)."""
    try:
        write()
    except OSError as exc:
        raise ClipbenchError(f"Could not write the result file {path} or its cells ({exc.strerror or exc}); every "
                             f"cell saved before this one is kept. {io_remedy(exc)} and run the same command again "
                             "to resume.") from None


def io_remedy(exc: OSError) -> str:
    """What to do about a failed write, by its cause (a full disk, a path in the way, no permission)."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
        return f"Something is in the way at{where} (a file or a dangling link where a folder belongs): remove it"
    if exc.errno == errno.ENOENT:
        return f"Check that the folder of{where or ' the file'} exists (was it removed while running?)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Make{where or ' the folder'} writable (or choose another --out)"
    return "Free space (or choose another --out)"


def provenance(model_fp: str, p: Plan, method, device: torch.device, tuning_prov: dict | None = None) -> dict:
    return {
        "model_fingerprint": model_fp,
        "data": {},
        "versions": results.package_versions(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "method_citation": method.citation,
        "tuning": tuning_prov,
    }


def data_fingerprints(suite: Suite, task: Task) -> dict:
    out = {f"{task.name}/train": task.train.value.fingerprint, f"{task.name}/test": task.test.value.fingerprint}
    for name, lazy in task.shifts.items():
        out[f"{task.name}/{name}"] = lazy.value.fingerprint
    for probe in task.probes:
        out[f"{probe}/test"] = suite.task(probe).test.value.fingerprint
    return out
