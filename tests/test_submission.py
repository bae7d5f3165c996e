"""Hostile submissions: every fabrication is rejected with the field named, and check never raises."""

from __future__ import annotations

import copy
import json

import pytest

from clipbench import results, runner, scoring, submission


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """One honest result of the fake method on the miniature suite (each test mutates a deep copy)."""
    from clipbench.plugins import collect, get_plugin_manager
    from tests.fakes import FakePlugin

    pm = get_plugin_manager(extra=[FakePlugin()])
    reg = collect(pm)
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2],
                                              out_dir=tmp_path_factory.mktemp("results")), reg, pm)
    return json.loads(path.read_text()), reg


def rehash(d):
    d["config_hash"] = results.config_hash(d["config"])


def rename_shift(d, new, value):
    d["reference"]["shape"]["shifts"] = {new: 50.0}
    d["reference"]["shape"]["chance"]["shifts"] = {new: 100 / 6}
    for c in d["cells"]:
        c["shifts"] = {new: value}


def set_config(key, value):
    def mutate(d):
        d["config"][key] = value
        rehash(d)
    return mutate


def set_cost(key, value, cell=0):
    return lambda d: d["cells"][cell]["cost"].__setitem__(key, value)


HOSTILE = [
    ("dotted shift at 500%", lambda d: rename_shift(d, "x.y", 500.0), "'x.y' is not a valid shift or probe name"),
    ("500% on a plain shift", lambda d: d["cells"][0]["shifts"].__setitem__("outline", 500.0),
     "cells[0].shifts.outline: an accuracy must be a number in [0, 100]"),
    ("dotted task", set_config("tasks", ["x.y"]), "config.tasks[0]: 'x.y' is not a valid task name"),
    ("negative ID", lambda d: d["cells"][1].__setitem__("id", -5.0), "cells[1].id: an accuracy"),
    ("reference above 100", lambda d: d["reference"]["shape"].__setitem__("id", 101.0), "reference.shape.id"),
    ("negative trainable %", set_cost("trainable_pct", -1.0), "cells[0].cost.trainable_pct"),
    ("negative adapt seconds", set_cost("adapt_seconds", -3.0), "cells[0].cost.adapt_seconds"),
    ("a year of adapting", set_cost("adapt_seconds", 3.2e7), "cells[0].cost.adapt_seconds"),
    ("fractional parameters", set_cost("trainable_params", 1.5), "cells[0].cost.trainable_params: must be a whole"),
    ("negative throughput", set_cost("eval_images_per_second", -1.0), "cells[0].cost.eval_images_per_second"),
    ("inconsistent trainable %", lambda d: (set_cost("trainable_params", 100)(d), set_cost("trainable_pct", 1.0)(d),
                                             set_cost("trainable_params", 100, 1)(d), set_cost("trainable_pct", 2.0, 1)(d)),
     "trainable_pct does not match trainable_params"),
    ("empty run", lambda d: d.__setitem__("cells", []), "cells: empty"),
    ("no tasks", set_config("tasks", []), "config.tasks: must be a non-empty list"),
    ("seed as a list", lambda d: d["cells"][0].__setitem__("seed", [1]), "cells[0].seed: must be a whole number"),
    ("seeds as a list of lists", set_config("seeds", [[1]]), "config.seeds[0]: must be a whole number"),
    ("reference not an object", lambda d: d["reference"].__setitem__("shape", [1, 2]),
     "reference.shape: must be an object"),
    ("chance missing", lambda d: d["reference"]["shape"].pop("chance"), "reference.shape.chance: must be an object"),
    ("chance zero", lambda d: d["reference"]["shape"]["chance"].__setitem__("id", 0), "reference.shape.chance.id"),
    ("markup in the model name", set_config("model", "x | <script>alert(1)</script> | **pwn**"),
     "config.model: "),
    ("suite escaping its folder", set_config("suite", "../README"), "config.suite: '../README' is not a valid"),
    ("suite as an absolute path", set_config("suite", "/tmp/x"), "config.suite: '/tmp/x' is not a valid"),
    ("rich markup in the method", set_config("method", "[/b]x"), "config.method: '[/b]x' is not a valid"),
    ("pretrained missing", lambda d: (d["config"].pop("pretrained"), rehash(d)), "config.pretrained: missing"),
    ("unknown precision", set_config("precision", "fp64"), "config.precision"),
    ("zero shots", set_config("shots", 0), "config.shots"),
    ("a 5000-digit seed", lambda d: d["config"].__setitem__("seeds", [10 ** 5000]),
     "config.seeds[0]: a huge integer is outside"),
    ("duplicate cell", lambda d: d["cells"].append(copy.deepcopy(d["cells"][0])), "duplicate cell"),
    ("missing cell", lambda d: d["cells"].pop(), "seed 2 missing"),
    ("cell of a seed not run", lambda d: d["cells"][1].__setitem__("seed", 7), "cells[1].seed: 7 is not in config.seeds"),
    ("cell of another method", lambda d: d["cells"][0].__setitem__("method", "zeroshot"), "cells[0].method"),
    ("hash", lambda d: d.__setitem__("config_hash", "0" * 16), "config_hash does not match"),
    ("old schema", lambda d: d.__setitem__("schema", "clipbench.result/1"), "schema is"),
    ("path in provenance", lambda d: d["provenance"].__setitem__("device", "/etc/passwd"),
     "provenance.device: looks like a file path"),
    ("huge string", lambda d: d["provenance"].__setitem__("device_name", "x" * 5000), "longer than 500"),
    ("deep nesting", lambda d: d["provenance"].__setitem__("deep", json.loads("[" * 400 + "]" * 400)),
     "nested deeper than"),
    ("reference for a task not run", lambda d: d["reference"].__setitem__("size", d["reference"]["shape"]),
     "reference: holds tasks not in config.tasks"),
    ("cell not an object", lambda d: d["cells"].__setitem__(0, "cell"), "cells[0]: must be an object"),
    ("fingerprint mismatch", lambda d: d["provenance"].__setitem__("model_fingerprint", "ab" * 8),
     "provenance.model_fingerprint: differs"),
    ("not an object", None, "top level is not an object"),
    # per-image correctness: every accuracy must be what its bits record
    ("accuracy above its bits", lambda d: d["cells"][0].__setitem__("id", d["cells"][0]["id"] + 1.0),
     "cells[0].id: "),
    ("correctness missing", lambda d: d["cells"][0].pop("correct"), "cells[0].correct: must be an object"),
    ("correctness of a shift missing", lambda d: d["cells"][0]["correct"]["shifts"].pop("outline"),
     "cells[0].correct.shifts: must name the same sets"),
    ("bits not base64", lambda d: d["cells"][0]["correct"]["id"].__setitem__(
        "bits", "%" * len(d["cells"][0]["correct"]["id"]["bits"])),
     "cells[0].correct.id: 'bits' is not valid base64"),
    ("bits as a list", lambda d: d["cells"][0]["correct"]["id"].__setitem__("bits", [1, 0]),
     "cells[0].correct.id: 'bits' must be base64"),
    ("a set scored on fewer images", lambda d: d["cells"][0]["correct"].__setitem__(
        "id", scoring.pack_correct([True] * 3)) or d["cells"][0].__setitem__("id", 100.0),
     "cells[0].correct.id: scored 3 images, the zero-shot reference"),
    ("reference bits disagree", lambda d: d["reference"]["shape"]["correct"]["probes"].__setitem__(
        "size", scoring.pack_correct([False] * d["reference"]["shape"]["correct"]["probes"]["size"]["n"])),
     "reference.shape.probes.size: "),
]


@pytest.mark.parametrize("label, mutate, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_submissions_are_rejected_with_the_field(valid, label, mutate, message):
    data, reg = valid
    data = copy.deepcopy(data)
    if mutate is None:
        data = [data]
    else:
        mutate(data)
    problems = submission.check(data, set(reg.methods), reg.suites)
    assert any(message in p for p in problems), problems


def test_a_real_result_passes_every_check(valid):
    data, reg = valid
    known = {data["config"]["model_fingerprint"]: {"mini": data["reference"]}}
    assert submission.check(data, set(reg.methods), reg.suites, known) == []


def test_unknown_method_suite_and_tasks_the_suite_lacks(valid):
    data, reg = valid
    d = copy.deepcopy(data)
    assert "is not a registered method" in submission.check(d, {"zeroshot"}, reg.suites)[0]
    assert "is not a known suite" in submission.check(d, set(reg.methods), {})[0]
    d["config"]["tasks"] = ["shape", "size"]
    rehash(d)
    d["reference"]["size"] = copy.deepcopy(d["reference"]["shape"])
    problems = submission.check(d, set(reg.methods), reg.suites)
    assert any("covers every task suite 'mini' adapts on" in p for p in problems), problems
    d = copy.deepcopy(data)  # a task the suite does not have at all
    d["config"]["tasks"] = ["invented"]
    rehash(d)
    d["reference"] = {"invented": d["reference"]["shape"]}
    for c in d["cells"]:
        c["task"] = "invented"
    problems = submission.check(d, set(reg.methods), reg.suites)
    assert any("suite 'mini' has no task 'invented'" in p for p in problems), problems


def lower_reference_consistently(d, task="shape"):
    """A careful forger: one more image wrong in the reference's ID set, accuracy and bits both changed."""
    ref = d["reference"][task]
    n, raw = scoring.packed_parts(ref["correct"]["id"])
    value = int.from_bytes(raw, "little")
    value &= ~(1 << next(i for i in range(n) if value >> i & 1))
    flags = [bool(value >> i & 1) for i in range(n)]
    ref["correct"]["id"] = scoring.pack_correct(flags)
    ref["id"] = scoring.accuracy_from_correct(ref["correct"]["id"])


def test_a_lowered_zero_shot_reference_is_caught_without_a_rerun(valid):
    data, reg = valid
    known = {data["config"]["model_fingerprint"]: {"mini": copy.deepcopy(data["reference"])}}
    d = copy.deepcopy(data)
    d["reference"]["shape"]["id"] -= 5.0
    problems = submission.check(d, set(reg.methods), reg.suites, known)
    assert any("reference.shape.id" in p and "is not the accuracy its per-image correctness records" in p
               for p in problems), problems
    d = copy.deepcopy(data)
    lower_reference_consistently(d)
    d["summary"] = scoring.summarise(d["cells"], d["reference"])
    problems = submission.check(d, set(reg.methods), reg.suites, known)
    assert any("reference.shape.id" in p and "what this pretrained model scores" in p for p in problems), problems
    d = copy.deepcopy(data)
    d["reference"]["shape"]["probes"]["size"] = 90.0
    problems = submission.check(d, set(reg.methods), reg.suites, known)
    assert any("reference.shape.probes.size" in p for p in problems), problems


@pytest.mark.slow
def test_shipped_references_are_what_the_shipped_model_scores():
    """The known references a submission is held to are recomputed here from the shipped weights."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "known_references", Path(__file__).resolve().parent.parent / "tools" / "known_references.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    computed = json.loads(json.dumps(tool.compute()["references"]))
    assert submission.shipped_references() == computed


def test_the_shipped_model_is_among_the_known_references(embedded):
    """Without its fingerprint there, every reference of the shipped model would pass unchecked."""
    known = submission.shipped_references()
    assert embedded.fingerprint() in known
    assert set(known[embedded.fingerprint()]) == {"default", "default-b2n"}  # both shipped boards are held to them
    for refs in known[embedded.fingerprint()].values():
        assert all("correct" in ref for ref in refs.values())
    assert all("new" in ref for ref in known[embedded.fingerprint()]["default-b2n"].values())


def test_a_lowered_new_class_reference_of_the_shipped_b2n_board_is_caught(embedded):
    """default-b2n rows are held to the shipped model's new-class references too, not only default's."""
    fp = embedded.fingerprint()
    known = submission.shipped_references()
    refs = copy.deepcopy(known[fp]["default-b2n"])
    p = submission.Problems()
    submission._against_known(p, {"model_fingerprint": fp, "suite": "default-b2n"}, refs, known)
    assert p == []
    refs["animals"]["new"] -= 5.0
    submission._against_known(p, {"model_fingerprint": fp, "suite": "default-b2n"}, refs, known)
    assert any(line.startswith("reference.animals.new:") for line in p), p


RAW = [
    ("5000-digit integer", lambda: '{"schema": ' + "1" * 5000 + "}", "not valid JSON (Exceeds the limit"),
    ("990-deep nesting", lambda: '{"schema": "clipbench.result/2", "config": {}, "provenance": {}, "reference": {}, '
                                 '"cells": [' + "[" * 990 + "]" * 990 + "]}",
     ("cells[0]: must be an object", "nested too deeply")),  # which one depends on the stack left to the parser
    ("100000-deep nesting", lambda: "[" * 100000, "nested too deeply"),
    ("duplicate keys", lambda: '{"schema": "a", "schema": "b"}', "appears twice"),
    ("NaN", lambda: '{"schema": NaN}', "NaN is not a JSON number"),
    ("not UTF-8", lambda: b"\x00\xff\xfe", "cannot be read"),
    ("empty", lambda: "", "not valid JSON"),
]


@pytest.mark.parametrize("label, content, message", RAW, ids=[r[0] for r in RAW])
def test_check_file_bounds_what_it_reads(tmp_path, label, content, message):
    raw = content()
    path = tmp_path / "x.json"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    problems = submission.check_file(path)
    messages = message if isinstance(message, tuple) else (message,)
    assert problems and any(m in p for p in problems for m in messages), problems


def test_a_48_megabyte_file_of_nan_is_not_read(tmp_path):
    path = tmp_path / "big.json"
    with path.open("w") as f:
        f.write("[" + ",".join(["NaN"] * 1000) + ",")
        f.write(("NaN," * 2**20) * 12)
        f.write("NaN]")
    assert path.stat().st_size > 48 * 10**6
    problems = submission.check_file(path)
    assert len(problems) == 1 and "a result file is at most 32 MB" in problems[0]


def test_problems_are_capped(valid):
    data, reg = valid
    d = copy.deepcopy(data)
    d["cells"] = [copy.deepcopy(d["cells"][0]) for _ in range(500)]
    for c in d["cells"]:
        c["id"] = 500.0
    problems = submission.check(d, set(reg.methods), reg.suites)
    assert len(problems) == submission.MAX_PROBLEMS + 1 and problems[-1].startswith("... and ")


def test_check_never_raises_on_random_mutations(valid):
    """Replace every leaf and container in turn by values of other types: check returns lines, never raises."""
    data, reg = valid
    odd = [None, True, "x", -1, 1e308, [], {}, [1], {"a": 1}, "[/b]"]

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, prefix + (i,))

    for path in list(paths(data))[1:]:
        for value in odd:
            d = copy.deepcopy(data)
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
            problems = submission.check(d, set(reg.methods), reg.suites)
            assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


MORE_HOSTILE = [
    ("cost as a list", lambda d: d["cells"][0].__setitem__("cost", [1]), "cells[0].cost: must be an object"),
    ("a huge parameter count", set_cost("trainable_params", 10 ** 4000), "cells[0].cost.trainable_params"),
    ("chance of 100", lambda d: d["reference"]["shape"]["chance"].__setitem__("id", 100.0),
     "reference.shape.chance.id"),
    ("a probe's chance moved next to its accuracy", lambda d: d["reference"]["shape"]["chance"]["probes"].__setitem__(
        "size", 45.0), "reference.shape.chance.probes.size: 45.0 is not chance for the probe's 2 classes"),
    ("a tuning seed", set_config("seeds", [1, 10001]), "is one of the tuning seeds"),
    ("options not in the config", set_config("options", {"bump": 3.0}), "config.options"),
    ("a tuned option the method lacks", set_config("tuned", {"shape": {"nope": 1}}), "config.tuned"),
    ("a key with a newline", lambda d: d["provenance"].__setitem__("versions", {"a\nb": "1"}),
     "a key that is not a short printable string"),
    # #23.2: seeds are the board's; #23.8: so are shots
    ("seed shopping: seeds 4, 5", lambda d: (set_config("seeds", [4, 5])(d), [c.__setitem__("seed", c["seed"] + 3)
                                                                             for c in d["cells"]]),
     "config.seeds: suite 'mini' ranks rows on its evaluation seeds 1, 2, 3; seed 4 belongs to no row"),
    ("a 64-shot row", lambda d: (set_config("shots", 64)(d), [c.__setitem__("shots", 64) for c in d["cells"]]),
     "config.shots: suite 'mini' ranks 2-shot rows; this row ran 64"),
]


@pytest.mark.parametrize("label, mutate, message", MORE_HOSTILE, ids=[h[0] for h in MORE_HOSTILE])
def test_more_hostile_submissions(valid, label, mutate, message):
    data, reg = valid
    data = copy.deepcopy(data)
    mutate(data)
    problems = submission.check(data, set(reg.methods), reg.suites)
    assert any(message in p for p in problems), problems


def test_1e400_is_refused_when_read(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": 1e400}')
    assert "too large for a number" in submission.check_file(tmp_path / "x.json")[0]


def test_recorded_option_values_out_of_range_are_problems_when_the_methods_are_known():
    """A result file recording `linear-probe.steps=-5` or a tuned lr of -1.0 is refused by the leaderboard
    check (issue 24): the same option ranges as --option and tuned files."""
    import copy
    import json
    from pathlib import Path

    from clipbench import results, submission
    from clipbench.plugins import collect, get_plugin_manager

    methods = collect(get_plugin_manager(load_entrypoints=False)).methods
    [path] = sorted((Path(__file__).parent.parent / "leaderboards" / "results").glob("default__linear-probe__*.json"))
    good = json.loads(path.read_text())
    assert not [line for line in submission.check(good, methods) if "method_config" in line]
    bad = copy.deepcopy(good)
    bad["config"]["method_config"]["steps"] = -5
    bad["config"]["tuned"] = {"shape": {"lr": -1.0}}
    bad["config_hash"] = results.config_hash(bad["config"])
    problems = submission.check(bad, methods)
    assert "config.method_config.steps must be at least 0, got -5" in problems, problems
    assert "config.tuned.shape.lr must be above 0, got -1.0" in problems, problems
    assert not [line for line in submission.check(bad, set(methods)) if "must be" in line]  # names only: no check
# ------------------------------------------------------------------ forgeries of committed rows (#23)

from pathlib import Path  # noqa: E402

COMMITTED = Path(__file__).resolve().parent.parent / "leaderboards" / "results"


@pytest.fixture(scope="module")
def board():
    """The registry's methods (with defaults and search spaces), suites, known references and known models."""
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager(load_entrypoints=False))
    return dict(known_methods=dict(reg.methods), suites=reg.suites,
                known_references=submission.shipped_references(), known_models=submission.known_models())


def committed(method):
    [path] = COMMITTED.glob(f"default__{method}__*.json")
    return json.loads(path.read_text())


def config_change(**changes):
    def mutate(d):
        d["config"].update(changes)
        rehash(d)
    return mutate


def retune(task, values):
    def mutate(d):
        d["config"]["tuned"][task] = values
        rehash(d)
    return mutate


def bf16_lowered_probe(d):
    """lora's probe references lowered with their bits (consistent), and the row said to be bf16."""
    for ref in d["reference"].values():
        for name, packed in ref["correct"]["probes"].items():
            ref["correct"]["probes"][name] = scoring.pack_correct([False] * packed["n"])
            ref["probes"][name] = 0.0
    d["summary"] = scoring.summarise(d["cells"], d["reference"])
    config_change(precision="bf16")(d)


def params(n, pct=None):
    def mutate(d):
        for c in d["cells"]:
            c["cost"]["trainable_params"] = n
            if pct is not None:
                c["cost"]["trainable_pct"] = pct
    return mutate


def other_weights(d):
    d["config"]["model_fingerprint"] = d["provenance"]["model_fingerprint"] = "ab" * 8
    rehash(d)


FORGERIES = [
    # 3: "tuned" is checked against the shipped tuned configs and the search space
    ("tip-adapter-f run at lr=0.01, relabelled tuned", "tip-adapter-f", retune("colour", {"lr": 0.01}),
     "config.tuned.colour: lr=0.01 is not what the shipped tuned config"),
    ("linear-probe, nothing to tune, says tuned", "linear-probe",
     lambda d: retune("animals", {next(iter(d["config"]["method_config"])): 1})(d),
     "config.tuned: method 'linear-probe' declares no search space"),
    ("a tuned option outside the search space", "tip-adapter-f", retune("colour", {"epochs": 3}),
     "config.tuned.colour: epochs is not in method 'tip-adapter-f'"),
    # 8: options removed after setting a value by hand
    ("options removed after init_alpha=10", "tip-adapter-f",
     lambda d: (d["config"]["method_config"].__setitem__("init_alpha", 10.0), rehash(d)),
     "config.method_config.init_alpha: 10.0 is not the method's default (1.17)"),
    # 8: bf16 skipped the reference check
    ("bf16 with lowered probe references", "lora", bf16_lowered_probe, "config.precision: 'bf16' rows of this model"),
    # 8: trainable parameters bounded by the known model's size
    ("10^12 trainable parameters", "lora", params(10 ** 12, 100.0), "cost.trainable_params: 1000000000000 is more"),
    ("1 trainable parameter, the % left", "lora", params(1), "cost.trainable_pct: "),
    # 4: identity is the weights
    ("the embedded weights named ViT-B-32 (openai)", "zeroshot",
     config_change(model="ViT-B-32", architecture="ViT-B-32", pretrained="openai"),
     "config.model: fingerprint f8aadfabf412419d is the weights of clipbench-tiny (world-real)"),
    ("a wrong pretrained tag", "zeroshot", config_change(pretrained="world"),
     "this row names them 'clipbench-tiny' ('world')"),
    ("other weights under the embedded name", "zeroshot", other_weights,
     "config.model_fingerprint: abababababababab is not the weights of clipbench-tiny (world-real)"),
    # 8: names end where they end ($ matched before a final newline)
    ("a method named 'zeroshot\\n'", "zeroshot", config_change(method="zeroshot\n"),
     "config.method: 'zeroshot\\n' is not a valid method name"),
]


@pytest.mark.parametrize("label, method, mutate, message", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forged_committed_rows_are_refused_with_the_field(board, label, method, mutate, message):
    d = committed(method)
    mutate(d)
    problems = submission.check(d, **board)
    assert any(message in p for p in problems), problems


def test_every_committed_row_passes_the_full_check(board):
    for path in sorted(COMMITTED.glob("*.json")):
        assert submission.check_file(path, **board) == [], path.name


@pytest.mark.parametrize("damage", ["{not json", '{"references": []}', '{"how": "x"}', ""])
def test_a_damaged_known_references_file_fails_loudly(tmp_path, damage):
    """#23.8: a damaged file silently turned the reference check off."""
    from clipbench.errors import ClipbenchError

    path = tmp_path / "known-references.json"
    path.write_text(damage)
    with pytest.raises(ClipbenchError, match="is damaged"):
        submission.shipped_references(path)


def test_the_known_models_registry_is_the_shipped_model(embedded):
    entry = submission.known_models()[embedded.fingerprint()]
    assert entry == {"model": "clipbench-tiny", "architecture": "clipbench-tiny", "pretrained": "world-real",
                     "parameters": embedded.num_parameters()}


def test_only_regular_files_are_read(tmp_path):
    """#23.8: a result entry that is a symlink to /dev/zero or a FIFO read until memory ran out, or hung."""
    import os

    (tmp_path / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.json")
    for name in ("zero.json", "fifo.json"):
        problems = submission.check_file(tmp_path / name)
        assert len(problems) == 1 and "is not a regular file" in problems[0], problems


def test_a_base_to_new_reference_is_checked_against_the_suites_split():
    """A row of a base-to-new task must carry new-class accuracy, with chance per half (a file that dropped
    "new" would be scored on its base accuracy alone); a task without new classes must carry none."""
    from tests.fakes import mini_suite

    split, plain = mini_suite("mini-split", class_split=True), mini_suite()
    base, new = split.tasks["shape"].base_new_split()
    cfg = {"seeds": [1], "shots": 2, "tasks": ["shape"]}

    def problems(suite, **ref):
        p = submission.Problems()
        chance = {"id": scoring.chance(len(base)), "shifts": {}, "probes": {}, **ref.pop("chance", {})}
        submission._against_suite(p, cfg, {"shape": {"shifts": {"outline": 1.0}, "probes": {"size": 1.0},
                                                     "chance": chance, **ref}}, suite)
        return [line for line in p if "chance.probes" not in line]

    good = dict(new=50.0, chance={"new": scoring.chance(len(new))})
    assert problems(split, **good) == []
    assert problems(split) == ["reference.shape.new: the suite's task 'shape' is scored base-to-new; its reference "
                               "needs new-class accuracy"]
    wrong = problems(split, new=50.0, chance={"new": 50.0})
    assert wrong == [f"reference.shape.chance.new: 50.0 is not chance for the {len(new)} classes of its new half"]
    assert problems(plain, new=50.0, chance={"id": scoring.chance(len(base + new)), "new": 50.0}) == \
        ["reference.shape.new: the suite's task 'shape' has no new classes"]
