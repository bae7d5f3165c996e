"""Hyper-parameter selection on validation data: the same search, budget and seeds for every method.

ELEVATER's automatic search on validation, made part of the protocol.  A
method declares its search space beside its config (a ``search`` list in a
config field's metadata; none means nothing to tune).  ``tune`` then, for each
task of a suite (per dataset, as ELEVATER and CoOp tune), adapts on the k-shot
support sets of the dedicated tuning seeds and scores each trial on those
seeds' validation splits: never an evaluation seed (``clipbench run`` refuses
the tuning seeds) and never a test set (tuning runs on a view of the task whose
test, shift and probe sets raise if touched).  Every method gets the same trial
budget; a choice at the edge of its grid is widened by up to ``WIDEN_STEPS``
further grid steps and reported if it is still at the edge.

Choices are written, trial by trial (an interrupted tuning resumes), to one
JSON file per (suite, method, model fingerprint, shots); ``clipbench run``
applies the file whose search-space hash and recipe hash still match the
method's, so values tuned under another grid or another fixed recipe (epochs,
batch size, optimiser...) are never applied to this one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clipbench import formatting, results
from clipbench.errors import ClipbenchError
from clipbench.request import Request, attach_data, check_out_dir, evaluator_for, io_remedy, load_for, resolve_device

TUNING_SEEDS = results.TUNING_SEEDS  # reserved: `clipbench run` refuses them as evaluation seeds
TRIAL_BUDGET = 8  # grid points per (method, task): every method gets the same number of trials
WIDEN_STEPS = 2  # further trials past a grid edge, when the best value sits on it
SCHEMA = "clipbench.tuned/1"
SHIPPED = Path(__file__).parent / "assets" / "tuned"


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` values evenly spaced in log scale from ``low`` to ``high`` (rounded to 3 significant digits)."""
    if points == 1:
        return [low]
    step = (math.log10(high) - math.log10(low)) / (points - 1)
    return [float(f"{10 ** (math.log10(low) + i * step):.3g}") for i in range(points)]


def search_space(method) -> dict[str, list]:
    """The method's declared grid: {field: [values]} from its config fields' ``search`` metadata."""
    space = {}
    for f in dataclasses.fields(method.config_class):
        values = f.metadata.get("search")
        if values:
            space[f.name] = list(values)
    return space


def space_hash(space: dict[str, list]) -> str:
    return hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:12]


def recipe(method) -> dict:
    """What a tuning holds fixed: the config's defaults outside the search space (epochs, batch size...).

    Only the defaults: a change of a method's code, or a run's own ``--option``, is not in it (the deviation
    card and the run's recorded options say those)."""
    space = search_space(method)
    defaults = method.config_class()
    return {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.name not in space}


def recipe_hash(method) -> str:
    return hashlib.sha256(json.dumps(recipe(method), sort_keys=True).encode()).hexdigest()[:12]


def tune_key(suite: str, method, model_fingerprint: str, shots: int) -> TuneKey:
    """The key of ``method``'s tuned-config file: its grid and its fixed recipe as they are now."""
    return TuneKey(suite, method.name, model_fingerprint, shots, space_hash(search_space(method)),
                   recipe_hash(method))


def made_for(key: dict, method) -> bool:
    """Whether a tuned file's key (of any suite, model or shots) was made for ``method``'s grid and recipe as
    they are now: what `clipbench show method` lists, beside `load_tuned`'s exact key."""
    want = tune_key("", method, "", 0)
    return all(key.get(k) == getattr(want, k) for k in ("method", "space_hash", "recipe_hash"))


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of the space's values, in declaration order (the first wins ties)."""
    names = list(space)
    return [dict(zip(names, combo)) for combo in itertools.product(*(space[n] for n in names))]


def check_space(method, space: dict[str, list]) -> None:
    trials = math.prod(len(v) for v in space.values()) if space else 0
    if trials > TRIAL_BUDGET:
        raise ClipbenchError(f"Method {method.name!r} declares a search space of {trials} combinations; the "
                             f"trial budget, the same for every method, is {TRIAL_BUDGET}.")
    defaults = method.config_class()
    for name, values in space.items():
        kind = type(getattr(defaults, name))
        if not values or any(not isinstance(v, kind) and not (kind is float and isinstance(v, int)) for v in values):
            raise ClipbenchError(f"Method {method.name!r}: the search values of {name} must be "
                                 f"{kind.__name__}s like its default.")


def bounds(method) -> dict[str, tuple]:
    """Limits a search may not widen past: a field's ``bounds`` metadata (inclusive), if any."""
    return {f.name: tuple(f.metadata["bounds"]) for f in dataclasses.fields(method.config_class)
            if "bounds" in f.metadata}


def widen(space: dict[str, list], name: str, value, limits: tuple | None = None) -> object | None:
    """One grid step past ``value`` at an edge of ``space[name]`` (log step for positive numbers), or None
    when the field cannot be widened (not positive numbers, or the step would leave ``limits``)."""
    values = space[name]
    if len(values) < 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    ordered = sorted(values)
    if value == ordered[-1]:
        nxt = ordered[-1] * ordered[-1] / ordered[-2]
    elif value == ordered[0]:
        nxt = ordered[0] * ordered[0] / ordered[1]
    else:
        return None
    nxt = float(f"{nxt:.3g}")
    nxt = int(round(nxt)) if isinstance(values[0], int) else nxt
    if nxt <= 0 or nxt in values or (limits is not None and not limits[0] <= nxt <= limits[1]):
        return None
    return nxt


def at_edges(space: dict[str, list], values: dict) -> list[str]:
    out = []
    for name, v in values.items():
        grid_values = sorted(set(space[name]) | {v})
        if len(space[name]) > 1 and isinstance(v, (int, float)) and not isinstance(v, bool) and \
                v in (grid_values[0], grid_values[-1]):
            out.append(name)
    return out


# ------------------------------------------------------------------ the tuned-config file


@dataclass(frozen=True)
class TuneKey:
    suite: str
    method: str
    model_fingerprint: str
    shots: int
    space_hash: str
    recipe_hash: str  # what the tuning held fixed: a changed default outside the grid makes the file stale

    def filename(self) -> str:
        return f"{self.suite}__{self.method}__{self.model_fingerprint}__{self.shots}shot.json"


def tuned_dirs(extra: Path | None = None) -> list[Path]:
    """Where tuned configs are looked for: ``--tuned`` (default ./tuned), then the shipped ones."""
    return [d for d in (extra or Path("tuned"), SHIPPED) if d is not None]


def load_tuned(key: TuneKey, dirs: list[Path], method=None) -> tuple[Path, dict] | None:
    """The first tuned-config file for ``key`` (grid and recipe as they are now), else None.

    A file of another search space, recipe or model is skipped; a damaged one (truncated, wrong types, a value
    its option refuses when ``method`` is given) is refused by name, never skipped: skipping it would
    quietly run with other values, or let `tune` start over and overwrite it.
    """
    for folder in dirs:
        path = Path(folder) / key.filename()
        if not path.is_file():
            continue
        try:
            data = results.read_json(path)
        except results.ResultFileError as exc:
            raise damaged(path, str(exc).rstrip(".")) from None
        if not isinstance(data, dict) or not isinstance(data.get("key"), dict) or "schema" not in data:
            raise damaged(path, "it is not a tuned-config record")
        if data.get("schema") == SCHEMA and data.get("key") == dataclasses.asdict(key):
            problem = record_problem(data, method)
            if problem:
                raise damaged(path, problem)
            return path, data
    return None


def damaged(path: Path, why: str) -> ClipbenchError:
    shipped = Path(path).parent == SHIPPED
    fix = ("reinstall clipbench" if shipped
           else "delete it (its finished tasks are lost) and run `clipbench tune` again")
    return ClipbenchError(f"The tuned-config file {path} is damaged ({why}); {fix}.")


def record_problem(record: dict, method=None) -> str | None:
    """What makes a tuned-config record unusable, or None: its shape, and each chosen value's type and range."""
    from clipbench.config import config_problems

    tasks = record.get("tasks")
    if not isinstance(tasks, dict):
        return "its tasks are not an object"
    for task, rec in tasks.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("trials", []), list):
            return f"task {task}: not an object with a list of trials"
        if not rec.get("done"):
            continue
        values = rec.get("values")
        if not isinstance(values, dict):
            return f"task {task}: its chosen values are not an object"
        for name, kind in (("val_accuracy", (int, float)), ("seconds", (int, float)), ("at_edge", list)):
            if isinstance(rec.get(name), bool) or not isinstance(rec.get(name), kind):
                return f"task {task}: {name} is missing or of the wrong type"
        if method is not None:
            known = {f.name for f in dataclasses.fields(method.config_class)}
            unknown = sorted(set(values) - known)
            if unknown:
                return f"task {task}: {method.name} has no option {unknown[0]}"
            problems = config_problems(method.config_class, values)
            if problems:
                return f"task {task}: {problems[0]}"
    return None


def shipped_values(suite: str, method, model_fingerprint: str, shots: int = 16) -> dict[str, dict]:
    """{task: values} that the shipped tuned configs hold for a method (empty where none ship)."""
    found = load_tuned(tune_key(suite, method, model_fingerprint, shots), [SHIPPED], method)
    return chosen_values(found[1]) if found else {}


def new_record(key: TuneKey, space: dict, fixed: dict | None = None) -> dict:
    """An empty tuned-config record; ``fixed`` is the recipe the key's recipe hash stands for, kept readable."""
    return {"schema": SCHEMA, "key": dataclasses.asdict(key), "space": space, "recipe": fixed or {},
            "seeds": list(TUNING_SEEDS),
            "budget": TRIAL_BUDGET, "widen_steps": WIDEN_STEPS, "granularity": "per task (ELEVATER, CoOp)",
            "selection": "mean validation accuracy over the tuning seeds; ties go to the earlier grid point",
            "tasks": {}}


def chosen_values(record: dict | None) -> dict[str, dict]:
    """{task: {option: value}} of a tuned-config record (empty without one)."""
    if not record:
        return {}
    return {t: dict(v["values"]) for t, v in record.get("tasks", {}).items() if v.get("done")}


# ------------------------------------------------------------------ tuning


def tune_task(method, space: dict, task_record: dict, trial: Callable[[dict], float],
              save: Callable[[], None], progress: Callable[[int, int, dict, bool], None],
              limits: dict[str, tuple] | None = None) -> dict:
    """Run the grid (then up to WIDEN_STEPS steps past an edge) for one task, resuming from ``task_record``.

    ``progress(number, total, trial, recorded)`` follows every point: its number in the order the trials
    were first run, the points known so far, its record (values, val_accuracy, seconds), and whether it was
    read back from an earlier, interrupted tuning."""
    trials = task_record.setdefault("trials", [])
    done = {json.dumps(t["values"], sort_keys=True): t for t in trials}
    points = grid(space)
    total = len(points)

    def run(values: dict) -> float:
        key = json.dumps(values, sort_keys=True)
        recorded = key in done
        if not recorded:
            start = time.perf_counter()
            acc = trial(values)
            done[key] = {"values": values, "val_accuracy": acc, "seconds": round(time.perf_counter() - start, 2)}
            trials.append(done[key])
            save()
        progress(trials.index(done[key]) + 1, total, done[key], recorded)
        return done[key]["val_accuracy"]

    def best_of(candidates: list[dict]) -> dict:
        return max(candidates, key=lambda v: (run(v), -candidates.index(v)))

    best = best_of(points)
    widened = []
    searched = {n: list(v) for n, v in space.items()}
    for _ in range(WIDEN_STEPS):
        edge = at_edges(searched, best)
        nxt = None
        for name in edge:
            step = widen(searched, name, best[name], (limits or {}).get(name))
            if step is not None:
                nxt = dict(best, **{name: step})
                searched[name].append(step)
                break
        if nxt is None:
            break
        total += 1
        widened.append(nxt)
        best = best_of([best, nxt])
    task_record.update({"values": best, "val_accuracy": done[json.dumps(best, sort_keys=True)]["val_accuracy"],
                        "widened": widened, "at_edge": at_edges(searched, best), "done": True,
                        "seconds": round(sum(t["seconds"] for t in trials), 1)})
    save()
    return task_record


def write_record(path: Path, record: dict) -> None:
    """Save ``record`` under a lock, first taking in the tasks other processes saved to the same file meanwhile
    (``--task`` shards sharing a folder: each saved only its own tasks, and the last writer won).  A failing
    disk is one sentence, as in `run`; every trial saved before stays saved."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            if path.is_file():
                try:
                    on_disk = results.read_json(path)
                except results.ResultFileError as exc:
                    raise damaged(path, str(exc).rstrip(".")) from None
                if isinstance(on_disk, dict) and on_disk.get("key") == record.get("key") and \
                        isinstance(on_disk.get("tasks"), dict):
                    for task, rec in on_disk["tasks"].items():
                        record["tasks"].setdefault(task, rec)  # another shard's task; this process keeps its own
            results.write_atomic(path, record)
    except OSError as exc:
        raise ClipbenchError(f"Could not write the tuned-config file {path} ({exc.strerror or exc}); every trial "
                             f"saved before this one is kept. {io_remedy(exc)} and run the same command again to "
                             "resume.") from None


class _locked:
    """An exclusive lock on ``path`` (created if need be) while the block runs; no lock without fcntl."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: saves are still atomic, only concurrent shards may race
            self.file = None
            return self
        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()  # closing releases the lock
        return False


# ------------------------------------------------------------------ running it


@dataclass
class TuneRequest(Request):
    """A `clipbench tune`: the fields every request has (no evaluation seeds: tuning has its own)."""

    out_dir: Path = Path("tuned")


def guarded(task):
    """The task as tuning may see it: its train pool only; test, shift (and new-class) sets raise if touched."""
    from clipbench import protocol

    return dataclasses.replace(protocol.sealed(task, "Tuning", "tuning may only use the train pool's validation "
                                                               "splits"), probes=[])


def validation_accuracy(method, config, model, task, fewshot, device) -> float:
    """Adapt on a tuning seed's k shots and score its validation split (the one scoring path)."""
    import torch

    from clipbench import metrics, protocol
    from clipbench.method import AdaptContext

    seed = fewshot.seed
    torch.manual_seed(seed)
    adapted = method.adapt(model.clone(), fewshot, task, config, AdaptContext(device=device, seed=seed))
    if hasattr(adapted.model.module, "eval"):
        adapted.model.module.eval()
    with torch.inference_mode():
        feats = fewshot.features(adapted.model, "val", raw=adapted.raw_features)
        preds = protocol.predict(adapted.logits_from_features(feats, task), None)
    return metrics.accuracy(preds, fewshot.val_labels)


def tune(request: TuneRequest, registry, pm, reporter=None, log: Callable[[str], None] = lambda s: None) -> list[Path]:
    """Tune every method on every task of the request; return the tuned-config files written."""
    from clipbench import protocol
    from clipbench.tasks import sample_fewshot

    reporter = reporter or protocol.SilentReporter()
    suite = registry.suite(request.suite)
    tasks = suite.selected(request.tasks)
    methods = [registry.method(m) for m in request.methods]
    if not methods:
        raise ClipbenchError(f"Name at least one --method. Known methods: {', '.join(sorted(registry.methods))}.")
    spaces = {}
    for method in methods:
        spaces[method.name] = search_space(method)
        check_space(method, spaces[method.name])
    check_out_dir(Path(request.out_dir))
    device = resolve_device(request.device)
    model = load_for(request, suite, registry, device)
    model.module.eval()
    attach_data(request, suite, tasks, model, probes=False)
    for task in tasks:
        protocol.sample_fewshot_check(task, request.shots)
    evaluator = evaluator_for(request, model, reporter)
    fingerprint = model.fingerprint()
    written = []
    for method in methods:
        space = spaces[method.name]
        key = tune_key(suite.name, method, fingerprint, request.shots)
        path = Path(request.out_dir) / key.filename()
        found = load_tuned(key, [Path(request.out_dir)], method)
        record = found[1] if found else new_record(key, space, recipe(method))
        if not space:
            log(f"{method.name}: declares no search space; runs with its paper defaults")
            continue
        for task in tasks:
            train_task, _ = protocol.task_views(task)
            view = guarded(train_task)
            task_record = record["tasks"].setdefault(task.name, {})
            if task_record.get("done"):
                log(f"{method.name} on {task.name}: already tuned, {task_record['values']} "
                    f"(validation {task_record['val_accuracy']:.1f})")
                continue

            fewshots = []  # sampled (and their images read) once for all trials of this task
            for seed in TUNING_SEEDS:
                fewshot = sample_fewshot(view.train.value, view.num_classes, request.shots, seed, task.name)
                protocol.attach_sources(fewshot, evaluator)
                fewshots.append(fewshot)

            def trial(values, method=method, view=view, fewshots=fewshots):
                config = method.make_config(values)
                accs = [validation_accuracy(method, config, model, view, fewshot, device) for fewshot in fewshots]
                if model.fingerprint() != fingerprint:
                    raise protocol.MethodError(
                        f"Method {method.name!r} changed the shared pretrained model while tuned on task "
                        f"{task.name!r} with {values}; a method may change only the copy it is given, so the "
                        "trial is not recorded.")
                return round(sum(accs) / len(accs), 4)

            def progress(number, total, trial, recorded, method=method, task=task, record=task_record):
                said = f"{method.name} on {task.name}: trial {number}/{total} {trial['values']} -> validation " \
                       f"{trial['val_accuracy']:.1f}"
                if recorded:
                    log(said + " (already run)")
                    return
                times = [t["seconds"] for t in record["trials"]]
                left = (total - len(times)) * sum(times) / len(times)
                log(said + f" in {trial['seconds']:.0f} s" + (f"; about {formatting.clock(left)} left on this task (more if "
                                                             "the best is at a grid edge)" if left else ""))

            tune_task(method, space, task_record, trial, lambda: write_record(path, record), progress,
                      bounds(method))
            edge = task_record["at_edge"]
            log(f"{method.name} on {task.name}: chose {task_record['values']} (validation "
                f"{task_record['val_accuracy']:.1f}, {len(task_record['trials'])} trials, "
                f"{task_record['seconds']:.0f} s)" + (f"; still at the grid edge in {', '.join(edge)}" if edge else ""))
        write_record(path, record)
        written.append(path)
    return written
