"""What a run is about to do, told before it does it: the plan header of a batch log and its ETA's inputs.

The runner tells its reporter (optional events, see :func:`clipbench.protocol.tell`): ``planned(outline)`` once the request is
checked, ``prepared(outline)`` once the model is loaded (result files, cells already done, cache),
``reference_started/finished(task)`` around each zero-shot reference and ``cell_started(method, task,
seed)`` before each cell; a local sweep tells ``parallel(workers)`` when it computes several cells at once.
Only the reporter prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Outline:
    """What a run is about to do, told before the work (a batch log's header): ``planned`` fills the names
    as soon as they are checked, ``prepared`` the rest once the model is loaded."""

    suite: str
    methods: list[str]
    tasks: list[str]
    seeds: list[int]
    model: str
    device: str
    out_dir: Path
    cells: int  # methods x tasks x seeds
    pending: list[tuple[str, str, int]] = field(default_factory=list)  # (method, task, seed) to compute, in order
    outputs: list[Path] = field(default_factory=list)  # the merged result files
    references: list[str] = field(default_factory=list)  # tasks whose zero-shot reference is not stored yet
    cache: str = "off"  # the embedding cache: off, warm (every set the reference scores is in it) or cold
    cached_sets: int = 0
    scored_sets: int = 0
    cache_dir: Path | None = None
    model_fingerprint: str | None = None
    hyper: list[str] = field(default_factory=list)  # per method: where its hyper-parameters come from

    @classmethod
    def of(cls, request, p) -> "Outline":
        """What a checked request (``runner.plan``) names, before the model loads."""
        tasks = [t.name for t in p.tasks]
        methods = [m.name for m, _, _ in p.methods]
        return cls(p.suite.name, methods, tasks, list(request.seeds), request.model or p.suite.default_model,
                   str(p.device), Path(request.out_dir), len(methods) * len(tasks) * len(request.seeds))


def outline(prepared) -> Outline:
    """The full :class:`Outline` of a prepared request (:func:`clipbench.prepare.prepare`): the result files,
    the cells already done, what the embedding cache holds.  Reads only (no folder is created), so a run that
    fails next leaves nothing behind."""
    from clipbench import protocol

    request, p, evaluator = prepared.request, prepared.plan, prepared.evaluator
    out = Outline.of(request, p)
    out.model_fingerprint = prepared.model_fingerprint
    for run in prepared.runs:
        out.outputs.append(run.store.merged_path)
        done = run.store.done()
        out.pending += [(run.method.name, t.name, s) for t in p.tasks for s in request.seeds if (t.name, s) not in done]
        out.references += [t.name for t in p.tasks
                           if run.store.reference(t.name) is None and t.name not in out.references]
        out.hyper.append(hyper_source(run, request, [t.name for t in p.tasks], p.suite.name))
    cache = evaluator.cache
    if cache is not None and cache.enabled:
        out.cache_dir = cache.root
        visual = evaluator.visual_fingerprint or protocol.image_encoder_fingerprint(prepared.model)
        sets = {}
        for task in p.tasks:
            train_task, new_task = protocol.task_views(task)
            for images in [train_task.test.value, *(lazy.value for lazy in train_task.shifts.values()),
                           *(p.suite.task(q).test.value for q in task.probes),
                           *([new_task.test.value] if new_task is not None else [])]:
                sets[images.fingerprint] = cache.path(visual, images.fingerprint, f"features-{evaluator.precision}")
        out.scored_sets = len(sets)
        out.cached_sets = sum(path.is_file() for path in sets.values())
        out.cache = "warm" if out.cached_sets == out.scored_sets else "cold"
    return out


def hyper_source(run, request, tasks: list[str], suite: str = "default") -> str:
    """Where a method's hyper-parameters come from in this run, said before the work: a method whose
    search space and recipe have no finished tuning runs the paper's defaults, which must never pass unnoticed."""
    from clipbench import tuning

    name = run.method.name
    if request.tuned is not None:
        return f"{name}: the values the re-run result recorded"
    if request.defaults:
        return f"{name}: the paper's defaults (--defaults)"
    space = tuning.search_space(run.method)
    if not space:
        return f"{name}: its defaults (it declares nothing to tune)"
    if set(space) <= set(request.options.get(name, {})):
        return f"{name}: as set with --option"
    untuned = [t for t in tasks if t not in run.tuned]
    if not untuned:
        shipped = all(v.get("shipped") for v in (run.tuning_provenance or {}).get("tasks", {}).values())
        return f"{name}: tuned on every task ({'shipped with clipbench' if shipped else 'your tuned configs'})"
    return (f"{name}: the paper's defaults on {', '.join(untuned)}, tuned on {len(tasks) - len(untuned)} of "
            f"{len(tasks)} tasks (no finished tuning of its current search space and recipe for this model and suite; "
            f"`clipbench tune --method {name}" + (f" --suite {suite}" if suite != "default" else "") +
            "` chooses them)")
