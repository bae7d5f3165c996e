"""What `run` and `tune` are asked, and what both do with it before any work: device, output folder, model, data.

The two commands share their request's fields (:class:`Request`) and the steps
that turn it into a loaded model bound to its data, so they live below both
(:mod:`clipbench.runner` and :mod:`clipbench.tuning` import them; neither
imports the other for them).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from clipbench.cache import EmbeddingCache
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel, load_model
from clipbench.protocol import Evaluator, Reporter
from clipbench.plugins import Registry
from clipbench.tasks import Suite, Task, default_data_dir


@dataclass
class Request:
    """What every command that adapts a model is asked: methods, where (suite, tasks, shots), which model."""

    methods: list[str]
    suite: str = "default"
    tasks: list[str] = field(default_factory=list)
    shots: int = 16
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    out_dir: Path = Path("results")
    cache: bool = True
    data: Path | None = None  # root of real datasets (suites on real data); default $CLIPBENCH_DATA_DIR
    download: bool = False  # let torchvision fetch datasets it knows how to fetch


@dataclass
class RunRequest(Request):
    """A `clipbench run`: evaluation seeds and how the cells are scored, besides the shared fields."""

    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    options: dict[str, dict] = field(default_factory=dict)  # method -> {option: value}
    batch_size: int | None = None  # evaluation batch; None: protocol.default_batch_size of the device
    precision: str = "fp32"
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


def io_remedy(exc: OSError) -> str:
    """What to do about a failed write, by its cause (a full disk, a path in the way, no permission)."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
        return f"Something is in the way at{where} (a file or a dangling link where a folder belongs): remove it"
    if exc.errno == errno.ENOENT:
        return f"Check that the folder of{where or ' the file'} exists (was it removed while running?)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Make{where or ' the folder'} writable (or choose another --out)"
    return "Free space (or choose another --out)"


def load_for(request: Request, suite: Suite, registry: Registry, device: torch.device) -> ClipModel:
    """The request's model (``--model/--pretrained/--checkpoint``, else the suite's default) on ``device``."""
    name = request.model or suite.default_model
    pretrained = request.pretrained
    if pretrained is None and not request.checkpoint and name == suite.default_model:
        pretrained = suite.default_pretrained
    source = registry.models.get(name)
    if source is not None:
        return source.loader(pretrained=pretrained, checkpoint=request.checkpoint, device=str(device))
    return load_model(name, pretrained, request.checkpoint, str(device))


def attach_data(request: Request, suite: Suite, tasks: list[Task], model: ClipModel, probes: bool = True) -> None:
    """Point a real-data suite at ``--data`` and read the class names of every task the run uses.

    Called after the model loads (its input size is the size images are decoded
    to), before any training, so a missing dataset is reported before work starts.
    """
    suite.bind(request.data or default_data_dir(), request.download, model.image_size)
    for task in tasks:
        task.resolve()
        for probe in task.probes if probes else ():
            suite.task(probe).resolve()


def evaluator_for(request: Request, model: ClipModel, reporter: Reporter | None = None) -> Evaluator:
    """The evaluator a command scores with, bound to the pretrained ``model`` (its embeddings may be cached);
    a request without an evaluation batch or precision (tuning's) gets the evaluator's defaults."""
    evaluator = Evaluator(batch_size=getattr(request, "batch_size", None),
                          cache=EmbeddingCache() if request.cache else None,
                          precision=getattr(request, "precision", "fp32"))
    if reporter is not None:
        evaluator.reporter = reporter
    evaluator.bind(model)
    return evaluator
