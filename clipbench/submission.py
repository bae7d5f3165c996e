"""The checks a submitted result file must pass before it may reach a leaderboard.

A submission is hostile until checked.  :func:`check` walks the result schema
field by field (never by matching names, so a shift called ``x.y`` is checked
like any other), type-checks before it uses a value, bounds every number,
restricts every name to a safe character set (a stored ``summary``, written by older
versions, is ignored: every reader recomputes it with :mod:`clipbench.scoring`), and compares the zero-shot reference with what the
pretrained model is known to score.  It returns one line per problem and never
raises; :func:`check_file` also bounds what it reads (size, nesting, digits,
duplicate keys).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable

from clipbench import results, scoring
from clipbench.config import recorded_problems
from clipbench.errors import ClipbenchError

MAX_PROBLEMS = 50
MAX_STRING = 500
MAX_DEPTH = 6  # of free-form provenance / method-config values
PATHLIKE = re.compile(r"(^/|^~|\.\./|\\|^[A-Za-z]:)")
HEX = re.compile(r"^[0-9a-f]{16,64}$")
MAX_ADAPT_SECONDS = 10 * 24 * 3600.0  # ten days for one cell: more is not a measurement
MAX_MEMORY_MB = 10 * 2**20  # 10 TiB
MAX_IMAGES_PER_SECOND = 1e7
MAX_PARAMS = 10**13
MAX_CHANCE = 50.0  # a task has at least two classes


class Problems(list):
    """A list of problem lines that stops growing at MAX_PROBLEMS (and counts what it left out)."""

    def __init__(self):
        super().__init__()
        self.dropped = 0

    def add(self, line: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(line)
        else:
            self.dropped += 1

    def lines(self) -> list[str]:
        return list(self) + ([f"... and {self.dropped} more problem(s)"] if self.dropped else [])


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(p: Problems, where: str, x, lo: float, hi: float, *, integer: bool = False, allow_none=False) -> bool:
    if x is None and allow_none:
        return True
    if integer and not (isinstance(x, int) and not isinstance(x, bool)):
        p.add(f"{where}: must be a whole number, got {_show(x)}")
        return False
    if not _is_number(x):
        p.add(f"{where}: must be a number, got {_show(x)}")
        return False
    if isinstance(x, float) and not math.isfinite(x):
        p.add(f"{where}: not a finite number")
        return False
    if not lo <= x <= hi:
        p.add(f"{where}: {_show(x)} is outside [{lo:g}, {hi:g}]")
        return False
    return True


def _accuracy(p: Problems, where: str, x) -> bool:
    if _is_number(x) and not (isinstance(x, float) and not math.isfinite(x)) and not 0 <= x <= 100:
        p.add(f"{where}: an accuracy must be a number in [0, 100], got {_show(x)}")
        return False
    return _number(p, where, x, 0.0, 100.0)


def _show(x) -> str:
    """A short, safe rendering of a hostile value for a problem line."""
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) > 10**15:
        return "a huge integer"
    text = repr(x) if not isinstance(x, (dict, list)) else type(x).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _name(p: Problems, where: str, x, pattern=results.SAFE_NAME, what: str = "name") -> bool:
    """A name from the safe set (it ends up in file names, Markdown and terminals)."""
    if not isinstance(x, str) or not pattern.fullmatch(x):
        p.add(f"{where}: {_show(x)} is not a valid {what} (letters, digits, '-' and '_'"
              f"{', and . +' if pattern is results.SAFE_MODEL else ''}; at most 64 characters)")
        return False
    return True


def _mapping(p: Problems, where: str, x) -> bool:
    if not isinstance(x, dict):
        p.add(f"{where}: must be an object, got {_show(x)}")
        return False
    return True


def _free(p: Problems, where: str, value, depth: int = 0) -> None:
    """Free-form values (provenance, method config): bounded depth, finite numbers, short non-path strings."""
    if depth > MAX_DEPTH:
        p.add(f"{where}: nested deeper than {MAX_DEPTH} levels")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or len(k) > 100 or not k.isprintable():
                p.add(f"{where}: a key that is not a short printable string")
                continue
            _free(p, f"{where}.{k}", v, depth + 1)
    elif isinstance(value, list):
        if len(value) > 10000:
            p.add(f"{where}: a list of {len(value)} items")
            return
        for i, v in enumerate(value):
            _free(p, f"{where}[{i}]", v, depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            p.add(f"{where}: string longer than {MAX_STRING} characters")
        elif PATHLIKE.search(value):
            p.add(f"{where}: looks like a file path ({_show(value)})")
    elif _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            p.add(f"{where}: not a finite number")
        elif abs(value) > 1e12:
            p.add(f"{where}: implausibly large number {_show(value)}")
    elif value is not None and not isinstance(value, bool):
        p.add(f"{where}: unexpected value {_show(value)}")


# ------------------------------------------------------------------ the parts of a result


def _config(p: Problems, cfg) -> bool:
    if not _mapping(p, "config", cfg):
        return False
    ok = _name(p, "config.method", cfg.get("method"), what="method name")
    ok &= _name(p, "config.suite", cfg.get("suite"), what="suite name")
    for key in ("model", "architecture"):
        ok &= _name(p, f"config.{key}", cfg.get(key), results.SAFE_MODEL, "model name")
    if "pretrained" not in cfg:
        p.add("config.pretrained: missing (a pretrained tag, or null)")
        ok = False
    elif cfg["pretrained"] is not None:
        ok &= _name(p, "config.pretrained", cfg["pretrained"], results.SAFE_MODEL, "pretrained tag")
    tasks = cfg.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        p.add(f"config.tasks: must be a non-empty list of task names, got {_show(tasks)}")
        ok = False
    else:
        ok &= all([_name(p, f"config.tasks[{i}]", t, what="task name") for i, t in enumerate(tasks)])
        if ok and len(set(tasks)) != len(tasks):
            p.add("config.tasks: a task is named twice")
            ok = False
    seeds = cfg.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        p.add(f"config.seeds: must be a non-empty list of seeds, got {_show(seeds)}")
        ok = False
    else:
        ok &= all([_number(p, f"config.seeds[{i}]", s, 0, results.MAX_SEED, integer=True)
                   for i, s in enumerate(seeds)])
        problem = results.evaluation_seed_problem(seeds) if ok else None
        if problem:
            p.add(f"config.seeds: {problem}")
            ok = False
    ok &= _number(p, "config.shots", cfg.get("shots"), 1, 100000, integer=True)
    fp = cfg.get("model_fingerprint")
    if not isinstance(fp, str) or not HEX.fullmatch(fp):
        p.add(f"config.model_fingerprint: must be a hex digest, got {_show(fp)}")
        ok = False
    if cfg.get("precision", "fp32") not in ("fp32", "bf16"):
        p.add(f"config.precision: must be fp32 or bf16, got {_show(cfg.get('precision'))}")
        ok = False
    if not isinstance(cfg.get("method_config"), dict):
        p.add("config.method_config: missing or not an object")
        ok = False
    options = cfg.get("options", {})
    if not isinstance(options, dict) or (isinstance(cfg.get("method_config"), dict) and any(
            k not in cfg["method_config"] or cfg["method_config"][k] != v for k, v in options.items())):
        p.add("config.options: must be the method_config values set by hand")
        ok = False
    tuned = cfg.get("tuned", {})
    if not isinstance(tuned, dict) or not all(isinstance(v, dict) for v in tuned.values()):
        p.add("config.tuned: must map task names to the tuned option values")
        ok = False
    elif not all(isinstance(t, str) and results.SAFE_NAME.fullmatch(t) for t in tuned):
        p.add("config.tuned: a key is not a valid task name")
        ok = False
    elif isinstance(cfg.get("method_config"), dict) and any(
            k not in cfg["method_config"] for v in tuned.values() for k in v):
        p.add("config.tuned: names an option the method's config does not have")
        ok = False
    _free(p, "config", {k: v for k, v in cfg.items() if k not in ("tasks", "seeds")})
    return ok


def _provenance(p: Problems, prov, cfg: dict) -> None:
    if not _mapping(p, "provenance", prov):
        return
    for key in ("model_fingerprint", "versions", "device", "data"):
        if not prov.get(key):
            p.add(f"provenance.{key}: missing")
    if prov.get("model_fingerprint") != cfg.get("model_fingerprint"):
        p.add("provenance.model_fingerprint: differs from config.model_fingerprint")
    data = prov.get("data")
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(v, str) or not HEX.fullmatch(v):
                p.add(f"provenance.data.{_show(k)}: must be a hex fingerprint")
    _free(p, "provenance", prov)


def _named_accuracies(p: Problems, where: str, x) -> dict | None:
    if not _mapping(p, where, x):
        return None
    ok = True
    for k, v in x.items():
        ok &= _name(p, f"{where} key", k, what="shift or probe name") and _accuracy(p, f"{where}.{k}", v)
    return x if ok else None


def _reference(p: Problems, task: str, ref) -> bool:
    where = f"reference.{task}"
    if not _mapping(p, where, ref):
        return False
    ok = _accuracy(p, f"{where}.id", ref.get("id"))
    if "new" in ref:
        ok &= _accuracy(p, f"{where}.new", ref["new"])
    shifts = _named_accuracies(p, f"{where}.shifts", ref.get("shifts"))
    probes = _named_accuracies(p, f"{where}.probes", ref.get("probes"))
    ok &= shifts is not None and probes is not None
    if ok:
        ok &= _correctness(p, where, ref)
    chance = ref.get("chance")
    if not _mapping(p, f"{where}.chance", chance):
        return False
    ok &= _number(p, f"{where}.chance.id", chance.get("id"), 1e-6, MAX_CHANCE)
    if "new" in ref:
        ok &= _number(p, f"{where}.chance.new", chance.get("new"), 1e-6, MAX_CHANCE)
    for part, names in (("shifts", shifts), ("probes", probes)):
        got = chance.get(part)
        if names is None:
            continue
        if not isinstance(got, dict) or set(got) != set(names):
            p.add(f"{where}.chance.{part}: must name the same {part} as the reference")
            ok = False
            continue
        ok &= all([_number(p, f"{where}.chance.{part}.{k}", v, 1e-6, MAX_CHANCE) for k, v in got.items()])
    return bool(ok)


def _correctness(p: Problems, where: str, record: dict, ref: dict | None = None) -> bool:
    """Per-image correctness of every scored set: well-formed, the accuracy recomputes from it exactly,
    and (for a cell) as many images as the zero-shot reference scored on the same set."""
    correct = record.get("correct")
    if not _mapping(p, f"{where}.correct", correct):
        return False
    expected = {k for k in ("id", "new") if k in record} | {k for k in ("shifts", "probes")}
    if set(correct) != expected:
        p.add(f"{where}.correct: must hold exactly {', '.join(sorted(expected))}")
        return False
    for part in ("shifts", "probes"):
        if not isinstance(correct[part], dict) or set(correct[part]) != set(record[part]):
            p.add(f"{where}.correct.{part}: must name the same sets as {where}.{part}")
            return False
    ok = True
    accuracies, packed = scoring.record_accuracies(record), scoring.record_sets(record)
    ref_packed = scoring.record_sets(ref) if ref is not None else {}
    for key in sorted(accuracies):
        try:
            recomputed = scoring.accuracy_from_correct(packed[key])
        except ValueError as exc:
            p.add(f"{where}.correct.{key}: {exc}")
            ok = False
            continue
        if recomputed != accuracies[key]:
            p.add(f"{where}.{key}: {_show(accuracies[key])} is not the accuracy its per-image correctness "
                  f"records ({recomputed!r})")
            ok = False
        if key in ref_packed and isinstance(ref_packed[key], dict) and ref_packed[key].get("n") != packed[key]["n"]:
            p.add(f"{where}.correct.{key}: scored {packed[key]['n']} images, the zero-shot reference "
                  f"{_show(ref_packed[key].get('n'))}")
            ok = False
    return ok


def _cell(p: Problems, i: int, cell, cfg: dict, refs: dict) -> tuple | None:
    where = f"cells[{i}]"
    if not _mapping(p, where, cell):
        return None
    task, seed = cell.get("task"), cell.get("seed")
    ok = _name(p, f"{where}.task", task, what="task name")
    ok &= _number(p, f"{where}.seed", seed, 0, results.MAX_SEED, integer=True)
    if not ok:
        return None
    if task not in refs:
        p.add(f"{where}.task: {task!r} is not in config.tasks")
        return None
    if seed not in cfg["seeds"]:
        p.add(f"{where}.seed: {seed} is not in config.seeds")
    if cell.get("method", cfg["method"]) != cfg["method"]:
        p.add(f"{where}.method: {_show(cell.get('method'))} is not config.method")
    if cell.get("shots", cfg["shots"]) != cfg["shots"]:
        p.add(f"{where}.shots: {_show(cell.get('shots'))} is not config.shots")
    ref = refs[task]
    _accuracy(p, f"{where}.id", cell.get("id"))
    if ("new" in ref) != ("new" in cell):
        p.add(f"{where}.new: present in only one of the cell and its task's reference")
    elif "new" in cell:
        _accuracy(p, f"{where}.new", cell["new"])
    shapes_ok = _is_number(cell.get("id")) and ("new" not in cell or _is_number(cell["new"]))
    for part in ("shifts", "probes"):
        got = _named_accuracies(p, f"{where}.{part}", cell.get(part))
        if got is not None and set(got) != set(ref[part]):
            p.add(f"{where}.{part}: names differ from the reference's")
            shapes_ok = False
        shapes_ok &= got is not None
    if shapes_ok:
        _correctness(p, where, cell, ref)
    if "notes" in cell:
        if isinstance(cell["notes"], dict):
            _free(p, f"{where}.notes", cell["notes"])
        else:
            p.add(f"{where}.notes: must be an object")
    cost = cell.get("cost")
    costs_ok = False
    if _mapping(p, f"{where}.cost", cost):
        costs_ok = all([
            _number(p, f"{where}.cost.trainable_params", cost.get("trainable_params"), 0, MAX_PARAMS, integer=True),
            _number(p, f"{where}.cost.trainable_pct", cost.get("trainable_pct"), 0.0, 100.0),
            _number(p, f"{where}.cost.adapt_seconds", cost.get("adapt_seconds"), 0.0, MAX_ADAPT_SECONDS),
            _number(p, f"{where}.cost.peak_memory_mb", cost.get("peak_memory_mb"), 0.0, MAX_MEMORY_MB),
            _number(p, f"{where}.cost.eval_images_per_second", cost.get("eval_images_per_second"), 0.0,
                    MAX_IMAGES_PER_SECOND, allow_none=True)])
        if cost.get("cache", "off") not in ("warm", "cold", "unused", "off"):
            p.add(f"{where}.cost.cache: must be warm, cold, unused or off, got {_show(cost.get('cache'))}")
            costs_ok = False
    return task, seed, costs_ok


def _costs_agree(p: Problems, cells: list[dict]) -> None:
    """trainable_pct is trainable_params as a share of one model: the implied model size must agree.

    Called only on cells whose costs passed their bounds (finite, in range)."""
    sizes = set()
    for c in cells:
        cost = c["cost"]
        n, pct = cost["trainable_params"], cost["trainable_pct"]
        if pct > 0 and n > 0:
            sizes.add(round(100.0 * n / pct, -2) if 100.0 * n / pct > 1e4 else round(100.0 * n / pct))
        elif (n == 0) != (pct == 0):
            p.add("cells: trainable_params and trainable_pct disagree (one is zero, the other is not)")
            return
    if len(sizes) > 1 and max(sizes) > 1.01 * min(sizes):
        p.add("cells: trainable_pct does not match trainable_params for one model size across cells")


# ------------------------------------------------------------------ the whole file


def check(data, known_methods: set[str] | None = None, suites: dict | None = None,
          known_references: dict | None = None, complete: bool = True, known_models: dict | None = None) -> list[str]:
    """Every problem with a submitted result, one line each (empty: it is valid).  Never raises.

    ``suites`` maps suite names to :class:`clipbench.tasks.Suite` objects: a row
    must cover exactly the tasks the suite adapts on, with the suite's shifts and
    probes.  ``known_references`` maps a model fingerprint to {suite: {task:
    reference}} the pretrained model is known to score.  ``complete=False``
    accepts a run with cells still to do (resuming, reporting an unfinished run).
    ``known_models`` maps a fingerprint to the weights it is ({model, architecture,
    pretrained, parameters}, :func:`known_models`).
    """
    try:
        return _check(data, known_methods, suites, known_references, complete, known_models)
    except Exception as exc:  # a shape no rule above foresaw: still a problem line, never a crash
        return [f"file: cannot be checked ({type(exc).__name__})"]


def _check(data, known_methods, suites, known_references, complete, known_models=None) -> list[str]:
    p = Problems()
    if not isinstance(data, dict):
        return ["the top level is not an object"]
    if data.get("schema") != results.SCHEMA:
        p.add(f"schema is {_show(data.get('schema'))}, expected {results.SCHEMA!r}")
    for key, kind in (("config", dict), ("provenance", dict), ("cells", list), ("reference", dict)):
        if not isinstance(data.get(key), kind):
            p.add(f"field {key!r} is missing or not a{'n object' if kind is dict else ' list'}")
    if p:
        return p.lines()
    cfg = data["config"]
    if not _config(p, cfg):
        return p.lines()
    if data.get("config_hash") != results.config_hash(cfg):
        p.add("config_hash does not match config")
    if known_methods is not None and cfg["method"] not in known_methods:
        p.add(f"config.method: {cfg['method']!r} is not a registered method")
    elif isinstance(known_methods, dict):  # the registry's methods: their defaults and search spaces
        _against_method(p, cfg, data["provenance"], known_methods[cfg["method"]])
    for line in recorded_problems(cfg, known_methods):  # option values in type and range (config.option)
        p.add(line)
    suite = None
    if suites is not None:
        suite = suites.get(cfg["suite"])
        if suite is None:
            p.add(f"config.suite: {cfg['suite']!r} is not a known suite")
    _provenance(p, data["provenance"], cfg)
    refs = data["reference"]
    if set(refs) != set(cfg["tasks"]):
        extra = sorted(set(map(str, refs)) - set(cfg["tasks"]))
        for task in cfg["tasks"]:
            if task not in refs:
                p.add(f"reference.{task}: zero-shot reference missing")
        if extra:
            p.add(f"reference: holds tasks not in config.tasks ({_show(extra[0])})")
        return p.lines()
    if not all([_reference(p, t, refs[t]) for t in cfg["tasks"]]):
        return p.lines()
    if suite is not None and complete:
        _against_suite(p, cfg, refs, suite)
    if known_references is not None:
        _against_known(p, cfg, refs, known_references)
    if known_models is not None:
        _against_models(p, cfg, data["cells"], known_models)
    cells = data["cells"]
    if not cells:
        if complete:
            p.add("cells: empty; a result needs every task x seed cell")
        return p.lines()
    seen: dict[tuple, int] = {}
    costed = []
    for i, cell in enumerate(cells):
        checked = _cell(p, i, cell, cfg, refs)
        if checked is None:
            continue
        key, costs_ok = checked[:2], checked[2]
        if costs_ok:
            costed.append(cell)
        if key in seen:
            p.add(f"cells[{i}]: duplicate cell for task {key[0]!r} seed {key[1]!r} (also cells[{seen[key]}])")
        seen[key] = i
    for task in cfg["tasks"] if complete else ():
        for seed in cfg["seeds"]:
            if (task, seed) not in seen:
                p.add(f"cells: task {task!r} seed {seed!r} missing")
    _costs_agree(p, costed)
    if p:
        return p.lines()
    return p.lines()


def _against_suite(p: Problems, cfg: dict, refs: dict, suite) -> None:
    """A leaderboard row covers exactly the tasks the suite adapts on, with the suite's shifts and probes,
    on the suite's evaluation seeds (a subset, never others) and with its board's shots."""
    board_seeds = tuple(getattr(suite, "evaluation_seeds", ()) or ())
    other = sorted(set(cfg["seeds"]) - set(board_seeds))
    if board_seeds and other:
        p.add(f"config.seeds: suite {suite.name!r} ranks rows on its evaluation seeds "
              f"{', '.join(map(str, board_seeds))}; seed {other[0]} belongs to no row of its board")
    board_shots = getattr(suite, "board_shots", None)
    if board_shots is not None and cfg["shots"] != board_shots:
        p.add(f"config.shots: suite {suite.name!r} ranks {board_shots}-shot rows; this row ran {cfg['shots']} "
              "shots per class")
    if sorted(cfg["tasks"]) != sorted(suite.adapt_on):
        unknown = [t for t in cfg["tasks"] if t not in suite.tasks]
        if unknown:
            p.add(f"config.tasks: suite {suite.name!r} has no task {unknown[0]!r}")
        else:
            p.add(f"config.tasks: a leaderboard row covers every task suite {suite.name!r} adapts on "
                  f"({', '.join(sorted(suite.adapt_on))})")
        return
    for name in cfg["tasks"]:
        task = suite.tasks[name]
        chance = refs[name]["chance"]
        if task.classnames and not task.class_split and chance["id"] != scoring.chance(task.num_classes):
            p.add(f"reference.{name}.chance.id: {_show(chance['id'])} is not chance for the suite's "
                  f"{task.num_classes} classes")
        if ("new" in refs[name]) != bool(task.class_split):
            p.add(f"reference.{name}.new: the suite's task {name!r} " +
                  ("is scored base-to-new; its reference needs new-class accuracy" if task.class_split else
                   "has no new classes"))
        elif task.class_split and task.classnames:
            for half, classes in zip(("id", "new"), task.base_new_split()):
                if chance.get(half) != scoring.chance(len(classes)):
                    p.add(f"reference.{name}.chance.{half}: {_show(chance.get(half))} is not chance for the "
                          f"{len(classes)} classes of its {'base' if half == 'id' else 'new'} half")
        for probe in task.probes:
            probe_task = suite.tasks.get(probe)
            if probe_task is not None and probe_task.classnames and probe in chance["probes"] and \
                    chance["probes"][probe] != scoring.chance(probe_task.num_classes):
                p.add(f"reference.{name}.chance.probes.{probe}: {_show(chance['probes'][probe])} is not chance "
                      f"for the probe's {probe_task.num_classes} classes")
        if set(refs[name]["shifts"]) != set(task.shifts):
            p.add(f"reference.{name}.shifts: the suite's task {name!r} has shifts "
                  f"{', '.join(sorted(task.shifts)) or 'none'}")
        if set(refs[name]["probes"]) != set(task.probes):
            p.add(f"reference.{name}.probes: the suite's task {name!r} has probes "
                  f"{', '.join(sorted(task.probes)) or 'none'}")


def _against_known(p: Problems, cfg: dict, refs: dict, known: dict) -> None:
    """The zero-shot reference must be what the pretrained model scores, where that is known."""
    expected = (known.get(cfg["model_fingerprint"]) or {}).get(cfg["suite"]) or {}
    if expected and cfg.get("precision", "fp32") != "fp32":  # the known references are fp32 scores
        p.add(f"config.precision: {_show(cfg.get('precision'))} rows of this model on suite {cfg['suite']!r} "
              "cannot have their zero-shot reference checked (the known references are fp32): run fp32")
        return
    for task, ref in refs.items():
        want = expected.get(task)
        if want is None:
            continue
        for key in ("id", "new"):
            if key in want and ref.get(key) != want[key]:
                p.add(f"reference.{task}.{key}: {_show(ref.get(key))} is not {want[key]}, what this pretrained "
                      "model scores")
        for part in ("shifts", "probes"):
            for name, value in want.get(part, {}).items():
                if ref[part].get(name) != value:
                    p.add(f"reference.{task}.{part}.{name}: {_show(ref[part].get(name))} is not {value}, what "
                          "this pretrained model scores")
        if "chance" in want and ref.get("chance") != want["chance"]:
            p.add(f"reference.{task}.chance: differs from the task's chance levels")
        if "correct" in want and ref.get("correct") != want["correct"]:
            p.add(f"reference.{task}.correct: the images the pretrained model gets right differ from what this "
                  "pretrained model is known to get right")


def _jsonable(v):
    return [_jsonable(x) for x in v] if isinstance(v, (tuple, list)) else v


def _values(values: dict) -> str:
    """Option values for a problem line (keys are the method's option names, checked before)."""
    return ", ".join(f"{k}={_show(v)}" for k, v in sorted(values.items()))


def _against_method(p: Problems, cfg: dict, prov, method) -> None:
    """Where the hyper-parameters came from, derived from the values, never from the file's word for it:
    method_config must be the method's defaults except what config.options says was set by hand, and
    config.tuned must be the method's search space with the values the shipped tuned configs hold."""
    import dataclasses

    from clipbench import tuning

    try:
        defaults = {f.name: _jsonable(getattr(method.config_class(), f.name))
                    for f in dataclasses.fields(method.config_class)}
        space = tuning.search_space(method)
    except Exception:  # a plugin whose config cannot be built: said, never a crash
        p.add(f"config.method_config: the defaults of method {cfg['method']!r} cannot be read")
        return
    mc, options = cfg["method_config"], cfg.get("options") or {}
    for key in sorted(set(mc) | set(defaults)):
        if key not in defaults:
            p.add(f"config.method_config.{key}: method {cfg['method']!r} has no such option")
        elif key not in mc:
            p.add(f"config.method_config.{key}: missing (the method's default is {_show(defaults[key])})")
        elif _jsonable(mc[key]) != defaults[key] and key not in options:
            p.add(f"config.method_config.{key}: {_show(mc[key])} is not the method's default "
                  f"({_show(defaults[key])}) and config.options does not list it: a value set by hand says so")
    tuned = cfg.get("tuned") or {}
    if tuned and not space:
        p.add(f"config.tuned: method {cfg['method']!r} declares no search space, so nothing of it is tuned")
        return
    if not tuned:
        return
    shipped = tuning.shipped_values(cfg["suite"], method, cfg["model_fingerprint"], cfg["shots"])
    claims = ((prov.get("tuning") or {}).get("tasks") or {}) if isinstance(prov, dict) else {}
    for task, values in sorted(tuned.items()):
        outside = [k for k in values if k not in space]
        if outside:
            p.add(f"config.tuned.{task}: {outside[0]} is not in method {cfg['method']!r}'s search space")
            continue
        claim = claims.get(task) if isinstance(claims, dict) else None
        if shipped or (isinstance(claim, dict) and claim.get("shipped")):
            want = {k: v for k, v in (shipped.get(task) or {}).items() if k not in options}
            if values != want:
                p.add(f"config.tuned.{task}: {_values(values)} is not what the shipped tuned config of suite "
                      f"{cfg['suite']!r} and this model holds ({_values(want) or 'nothing'}): a value set by hand "
                      "is never \"tuned\"")


def _against_models(p: Problems, cfg: dict, cells: list, models: dict) -> None:
    """Model identity is the weights: a known fingerprint must carry its own name and tag, a known name its
    own fingerprint, and trainable_params / trainable_pct must describe that model's size."""
    fp = cfg["model_fingerprint"]
    said = (cfg["model"], cfg["architecture"], cfg["pretrained"])
    entry = models.get(fp)
    if entry is not None:
        real = (entry["model"], entry["architecture"], entry["pretrained"])
        if said != real:
            p.add(f"config.model: fingerprint {fp} is the weights of {real[0]} ({real[2]}); this row names them "
                  f"{_show(said[0])} ({_show(said[2])})")
        size = entry["parameters"]
        for i, cell in enumerate(cells):
            cost = cell.get("cost") if isinstance(cell, dict) else None
            if not isinstance(cost, dict) or not _is_number(cost.get("trainable_params")) or \
                    not _is_number(cost.get("trainable_pct")):
                continue
            n, pct = cost["trainable_params"], cost["trainable_pct"]
            if n > size:
                p.add(f"cells[{i}].cost.trainable_params: {_show(n)} is more than the {size} parameters of "
                      f"{real[0]}")
            elif n > 0 and not math.isclose(pct, 100.0 * n / size, rel_tol=1e-6):
                p.add(f"cells[{i}].cost.trainable_pct: {_show(pct)} is not {_show(n)} of the {size} parameters "
                      f"of {real[0]}")
        return
    for other, entry in models.items():
        if (entry["model"], entry["pretrained"]) == (cfg["model"], cfg["pretrained"]):
            p.add(f"config.model_fingerprint: {fp} is not the weights of {entry['model']} ({entry['pretrained']}) "
                  f"({other})")


KNOWN_REFERENCES = Path(__file__).parent / "assets" / "known-references.json"


def _known_file(path: Path | None = None) -> dict:
    """known-references.json, read and shape-checked; damaged, it stops the check (never silently off)."""
    path = path or KNOWN_REFERENCES
    try:
        data = json.loads(path.read_text())
        refs, models = data["references"], data["models"]
        ok = isinstance(refs, dict) and isinstance(models, dict) and all(
            isinstance(fp, str) and isinstance(suites, dict) and all(
                isinstance(tasks, dict) and tasks and all(isinstance(r, dict) for r in tasks.values())
                for tasks in suites.values()) for fp, suites in refs.items()) and all(
            isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("model", "architecture", "pretrained"))
            and isinstance(m.get("parameters"), int) and m["parameters"] > 0 for m in models.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ClipbenchError(f"{path} is damaged, so no zero-shot reference can be checked: reinstall clipbench "
                             "(or rewrite it with tools/known_references.py).")
    return data


def shipped_references(path: Path | None = None) -> dict:
    """Zero-shot references known for the shipped weights: {model fingerprint: {suite: {task: reference}}}.

    Written by tools/known_references.py; a test recomputes them from the shipped model.  A damaged file
    raises ClipbenchError: a check that silently turned itself off would pass every lowered reference.
    """
    return _known_file(path)["references"]


def known_models(path: Path | None = None) -> dict:
    """The registry of known weights: {fingerprint: {model, architecture, pretrained, parameters}}."""
    return _known_file(path)["models"]


def read_checked(paths: Iterable[Path], purpose: str) -> list[dict]:
    """Result files read with every bound and checked (a run still filling in is fine), as `report`, `export`
    and :func:`clipbench.load` read them; the first bad one stops the reading with the sentence
    "PATH cannot be <purpose>: <its first problem>"."""
    loaded = []
    for path in map(Path, paths):
        try:
            data = results.read_json(path)
        except results.ResultFileError as exc:
            raise ClipbenchError(str(exc)) from None
        problems = check(data, complete=False)
        if problems:
            raise ClipbenchError(f"{path} cannot be {purpose}: {problems[0]} (`clipbench leaderboard check` lists "
                                 "every problem).")
        loaded.append(data)
    return loaded


def check_file(path: Path, known_methods=None, suites=None, known_references=None, known_models=None) -> list[str]:
    """Read a file with every bound (size, nesting, digits, duplicate keys) and check it.  Never raises."""
    try:
        data = results.read_json(Path(path))
    except results.ResultFileError as exc:
        return [str(exc)]
    return check(data, known_methods, suites, known_references, known_models=known_models)
