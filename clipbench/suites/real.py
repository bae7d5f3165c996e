"""Built-in plugin: the standard suites on real datasets, declared through the same hook as any plugin's.

- ``fewshot11``: CoOp's eleven datasets, base-to-new (CoCoOp): adapt on the
  base half of the classes, score base (ID) and new classes, harmonic mean.
- ``imagenet-dg``: 16-shot ImageNet, scored on ImageNet-V2, -Sketch, -A and -R
  (the domain-generalisation protocol of SAFT and OrthCR).
- ``forgetting``: adapt on one of CIFAR-10, CIFAR-100, STL-10, MNIST, SVHN and
  probe zero-shot accuracy on the other four (A-CLIP's protocol: what does
  fine-tuning on one task cost everywhere else).

Each suite reads its data only when a run first touches a task, from
``--data ROOT`` (layouts in clipbench.data.real and the README).
"""

from __future__ import annotations

from clipbench.data import real
from clipbench.hookspecs import hookimpl
from clipbench.tasks import DataRoot, Lazy, Suite, Task

REAL_MODEL = "ViT-B-32"
REAL_PRETRAINED = "openai"


def dataset_task(ds: real.Dataset, data: DataRoot, shifts: dict[str, real.Dataset] | None = None,
                 probes: list[str] | None = None, class_split: bool = False) -> Task:
    """A task whose class names, splits and shifts are read from ``data`` on first use."""
    def split_of(dataset: real.Dataset, split: str) -> Lazy:
        return Lazy(lambda: dataset.split(data, split), f"{dataset.title} {split}")

    return Task(
        name=ds.key, classnames=[], templates=list(ds.templates),
        train=split_of(ds, "train"), test=split_of(ds, "test"),
        shifts={key: split_of(shift, "test") for key, shift in (shifts or {}).items()},
        probes=list(probes or []), class_split=class_split, description=ds.source,
        classnames_from=lambda: ds.classnames(data),
    )


def fewshot11() -> Suite:
    data = DataRoot()
    tasks = {key: dataset_task(ds, data, class_split=True) for key, ds in real.FEWSHOT11.items()}
    return Suite("fewshot11", tasks, list(tasks), "CoOp's eleven datasets, base-to-new generalisation (CoCoOp)",
                 default_model=REAL_MODEL, default_pretrained=REAL_PRETRAINED, data=data,
                 datasets=list(real.FEWSHOT11.values()))


def imagenet_dg() -> Suite:
    data = DataRoot()
    task = dataset_task(real.IMAGENET, data, shifts=real.IMAGENET_SHIFTS)
    return Suite("imagenet-dg", {"imagenet": task}, ["imagenet"],
                 "16-shot ImageNet scored on ImageNet-V2, -Sketch, -A, -R (domain generalisation)",
                 default_model=REAL_MODEL, default_pretrained=REAL_PRETRAINED, data=data,
                 datasets=[real.IMAGENET, *real.IMAGENET_SHIFTS.values()])


def forgetting() -> Suite:
    data = DataRoot()
    keys = list(real.PROBES)
    tasks = {key: dataset_task(real.PROBES[key], data, probes=[k for k in keys if k != key]) for key in keys}
    return Suite("forgetting", tasks, keys,
                 "adapt on one of CIFAR-10/100, STL-10, MNIST, SVHN; zero-shot probes on the other four "
                 "(--probes: only those present)",
                 default_model=REAL_MODEL, default_pretrained=REAL_PRETRAINED, data=data,
                 datasets=list(real.PROBES.values()))


@hookimpl
def clipbench_register_suites(register):
    register(fewshot11())
    register(imagenet_dg())
    register(forgetting())
