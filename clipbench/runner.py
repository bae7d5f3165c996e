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

from clipbench import protocol, results
from clipbench.cache import EmbeddingCache
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel, load_model
from clipbench.plugins import Registry
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
    batch_size: int = 512
    cache: bool = True
    precision: str = "fp32"
    data: Path | None = None  # root of real datasets (suites on real data); default $CLIPBENCH_DATA_DIR
    download: bool = False  # let torchvision fetch datasets it knows how to fetch


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ClipbenchError("--device cuda was asked for, but torch sees no CUDA device. Use --device cpu.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ClipbenchError(f"Unknown device {device!r}: use auto, cpu or cuda.")
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


def attach_data(request: RunRequest, suite: Suite, tasks: list[Task], model: ClipModel) -> None:
    """Point a real-data suite at ``--data`` and read the class names of every task the run uses.

    Called after the model loads (its input size is the size images are decoded
    to), before any training, so a missing dataset is reported before work starts.
    """
    if suite.data is not None:
        suite.data.path = request.data or default_data_dir()
        suite.data.download = request.download
        suite.data.image_size = model.image_size
    for task in tasks:
        task.resolve()
        for probe in task.probes:
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
    tasks = suite.selected(request.tasks)
    for task in tasks:
        for probe in task.probes:
            suite.task(probe)
    if not request.methods:
        raise ClipbenchError(f"Name at least one --method. Known methods: {', '.join(sorted(registry.methods))}.")
    if not request.seeds:
        raise ClipbenchError("--seeds must name at least one seed.")
    if request.precision not in ("fp32", "bf16"):
        raise ClipbenchError(f"Unknown precision {request.precision!r}: use fp32 or bf16.")
    for name in request.options:
        if name not in request.methods:
            raise ClipbenchError(f"--option names method {name!r}, which is not among --method "
                                 f"{' '.join(request.methods)}.")
    methods = []
    using_suite_model = (request.model or suite.default_model) == suite.default_model and not request.checkpoint
    for name in request.methods:
        method = registry.method(name)
        overrides = dict(suite.method_overrides.get(name, {})) if using_suite_model else {}
        overrides.update(request.options.get(name, {}))
        config = method.make_config(overrides)
        methods.append((method, config, _config_dict(config)))
    return Plan(suite, tasks, methods, resolve_device(request.device))


def _config_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def execute(request: RunRequest, registry: Registry, pm: pluggy.PluginManager,
            reporter: protocol.Reporter | None = None) -> list[Path]:
    """Run every (method, task, seed) cell not already in its result file; return the files."""
    reporter = reporter or protocol.SilentReporter()
    p = plan(request, registry)
    model = load_for(request, p.suite, registry, p.device)
    model.module.eval()
    attach_data(request, p.suite, p.tasks, model)
    for task in p.tasks:  # fail on too few shots before any training
        protocol.sample_fewshot_check(task, request.shots)
    evaluator = protocol.Evaluator(batch_size=request.batch_size, reporter=reporter,
                                   cache=EmbeddingCache() if request.cache else None, precision=request.precision)
    evaluator.bind(model)
    model_fp = model.fingerprint()
    paths = []
    for method, config, config_dict in p.methods:
        run_config = {
            "method": method.name,
            "method_config": config_dict,
            "suite": p.suite.name,
            "tasks": [t.name for t in p.tasks],
            "shots": request.shots,
            "seeds": list(request.seeds),
            "model": request.model or p.suite.default_model,
            "architecture": model.name,
            "pretrained": model.pretrained,
            "model_fingerprint": model_fp,
            "precision": request.precision,
        }
        path = results.result_path(request.out_dir, run_config)
        result = results.load_result(path) if path.exists() else results.new_result(
            run_config, provenance(model_fp, p, method, p.device))
        done = results.done_cells(result)
        pm.hook.clipbench_run_started(run=result)
        for task in p.tasks:
            if task.name not in result["reference"]:
                result["reference"][task.name] = protocol.zeroshot_reference(model, p.suite, task, evaluator)
                result["provenance"]["data"].update(data_fingerprints(p.suite, task))
        for task in p.tasks:
            for seed in request.seeds:
                if (task.name, seed) in done:
                    continue
                cell = protocol.run_cell(method, config, model, p.suite, task, seed, request.shots,
                                         evaluator, p.device, reporter)
                cell["method"] = method.name
                result["cells"].append(cell)
                result["summary"] = protocol.summarise(result["cells"], result["reference"])
                results.write_atomic(path, result)
                pm.hook.clipbench_cell_finished(run=result, cell=cell)
        result["summary"] = protocol.summarise(result["cells"], result["reference"])
        results.write_atomic(path, result)
        pm.hook.clipbench_run_finished(run=result, summary=result["summary"])
        paths.append(path)
    return paths


def provenance(model_fp: str, p: Plan, method, device: torch.device) -> dict:
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
        "suite_overrides": p.suite.method_overrides.get(method.name, {}),
    }


def data_fingerprints(suite: Suite, task: Task) -> dict:
    out = {f"{task.name}/train": task.train.value.fingerprint, f"{task.name}/test": task.test.value.fingerprint}
    for name, lazy in task.shifts.items():
        out[f"{task.name}/{name}"] = lazy.value.fingerprint
    for probe in task.probes:
        out[f"{probe}/test"] = suite.task(probe).test.value.fingerprint
    return out
