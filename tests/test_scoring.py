"""The one score (clipbench/scoring.py): pure, above chance, defined once for summary, report and leaderboard."""

import math
import subprocess
import sys

import pytest

from clipbench import scoring


def ref(id_=80.0, shifts=None, probes=None, classes=4, probe_classes=10, new=None):
    shifts = {"s": 60.0} if shifts is None else shifts
    probes = {"p": 70.0} if probes is None else probes
    r = {"id": id_, "shifts": shifts, "probes": probes,
         "chance": {"id": 100 / classes, "shifts": {s: 100 / classes for s in shifts},
                    "probes": {p: 100 / probe_classes for p in probes}}}
    if new is not None:
        r["new"] = new
        r["chance"]["new"] = 100 / classes
    return r


def cell(seed, id_, shifts, probes, task="t", **extra):
    c = {"task": task, "seed": seed, "id": id_, "shifts": shifts, "probes": probes,
         "cost": {"trainable_pct": 1.0, "adapt_seconds": 2.0, "peak_memory_mb": 3.0}}
    c.update(extra)
    return c


def test_the_module_is_pure():
    out = subprocess.run([sys.executable, "-c", "import sys, clipbench.scoring; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                          "('torch', 'numpy', 'clipbench')))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['clipbench', 'clipbench.hookspecs', 'clipbench.scoring']"


def test_pieces():
    assert scoring.chance(4) == 25.0
    assert scoring.forgetting(80.0, 70.0) == 10.0 and scoring.forgetting(70.0, 80.0) == -10.0
    assert scoring.above_chance(25.0, 25.0) == 0.0 and scoring.above_chance(100.0, 25.0) == 100.0
    assert scoring.retention(70.0, 40.0, 10.0) == 50.0  # (40 - 10) / (70 - 10)
    assert scoring.harmonic_mean([50.0, 100.0]) == pytest.approx(2 / (1 / 50 + 1 / 100))
    assert scoring.harmonic_mean([50.0, 0.0]) == 0.0 and scoring.harmonic_mean([50.0, -3.0]) == 0.0
    assert math.isnan(scoring.harmonic_mean([]))
    m, s = scoring.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert scoring.mean_std([5.0]) == (5.0, 0.0)


def test_guessing_never_scores():
    """A method at chance everywhere scores 0, even where a probe's retention ratio would look perfect."""
    r = ref(id_=80.0, shifts={"s": 60.0}, probes={"p": 12.0}, classes=4, probe_classes=10)
    guess = [cell(1, 25.0, {"s": 25.0}, {"p": 12.0})]
    task = scoring.summarise_task(guess, r)
    assert task["score"]["mean"] == 0.0
    # the old definition, H(ID, shift, probe / pretrained * 100), gave such a method H(25, 25, 100) = 33.3


def test_a_probe_near_chance_is_left_out_and_said_so():
    r = ref(probes={"easy": 70.0, "hopeless": 13.0}, probe_classes=10)
    c = [cell(1, 90.0, {"s": 70.0}, {"easy": 70.0, "hopeless": 40.0})]
    task = scoring.summarise_task(c, r)
    assert set(task["excluded_probes"]) == {"hopeless"}
    assert "within 5 points of chance 10.0" in task["excluded_probes"]["hopeless"]
    assert task["score_axes"]["retention"] == 100.0  # only "easy" counts; "hopeless" could not lift it
    assert task["mean_forgetting"]["mean"] == 0.0  # and its 27-point "gain" does not enter forgetting
    summary = scoring.summarise(c, {"t": r})
    assert summary["overall"]["excluded_probes"] == ["t:hopeless"]


def test_score_is_the_harmonic_mean_of_seed_means_above_chance():
    r = ref(id_=50.0, shifts={"a": 40.0, "b": 30.0}, probes={"p": 70.0}, classes=4, probe_classes=10)
    cells = [cell(1, 70.0, {"a": 50.0, "b": 40.0}, {"p": 64.0}), cell(2, 80.0, {"a": 60.0, "b": 30.0}, {"p": 58.0})]
    task = scoring.summarise_task(cells, r)
    id_axis = 100 * (75.0 - 25) / 75
    shift_axis = (100 * (55.0 - 25) / 75 + 100 * (35.0 - 25) / 75) / 2
    retention = 100 * (61.0 - 10) / (70 - 10)
    expected = 3 / (1 / id_axis + 1 / shift_axis + 1 / retention)
    assert task["score"]["mean"] == round(expected, 4)
    assert task["id"] == {"mean": 75.0, "std": round(math.sqrt(50), 4)}
    assert task["mean_forgetting"]["mean"] == 9.0


def test_overall_std_is_over_seeds_of_the_suite_mean():
    ra, rb = ref(), ref()
    cells = [cell(1, 70.0, {"s": 50.0}, {"p": 70.0}, task="a"), cell(2, 80.0, {"s": 50.0}, {"p": 70.0}, task="a"),
             cell(1, 60.0, {"s": 50.0}, {"p": 70.0}, task="b"), cell(2, 90.0, {"s": 50.0}, {"p": 70.0}, task="b")]
    o = scoring.summarise(cells, {"a": ra, "b": rb})["overall"]
    # per-seed suite means: seed 1 (70+60)/2 = 65, seed 2 (80+90)/2 = 85
    assert o["id"] == {"mean": 75.0, "std": round(math.sqrt(200), 4)}
    tasks = scoring.summarise(cells, {"a": ra, "b": rb})["tasks"]
    assert o["score"] == {"mean": round((tasks["a"]["score"]["mean"] + tasks["b"]["score"]["mean"]) / 2, 4),
                          "std": None}


def test_base_to_new_joins_the_score():
    r = ref(shifts={}, probes={}, classes=5, new=60.0)
    task = scoring.summarise_task([cell(1, 80.0, {}, {}, new=50.0)], r)
    assert set(task["score_axes"]) == {"id", "new"}
    assert task["base_new_hm"]["mean"] == round(2 / (1 / 80 + 1 / 50), 4)


def test_the_suite_base_to_new_harmonic_mean_is_cocoops_average_row():
    """CoCoOp's average: H of the mean base and the mean new accuracy, not the mean of the tasks' H."""
    ra, rb = ref(shifts={}, probes={}, new=50.0), ref(shifts={}, probes={}, new=50.0)
    cells = [cell(1, 90.0, {}, {}, task="a", new=30.0), cell(1, 60.0, {}, {}, task="b", new=70.0)]
    o = scoring.summarise(cells, {"a": ra, "b": rb})["overall"]
    assert o["base_new_hm"] == {"mean": round(scoring.harmonic_mean([75.0, 50.0]), 4), "std": None}  # 60.0; the tasks' mean H is 54.8
    tasks = scoring.summarise(cells, {"a": ra, "b": rb})["tasks"]
    assert round((tasks["a"]["base_new_hm"]["mean"] + tasks["b"]["base_new_hm"]["mean"]) / 2, 1) == 54.8


# ------------------------------------------------------------------ per-image correctness and the bootstrap


def test_packed_correctness_round_trips_and_gives_the_exact_accuracy():
    import random

    import torch

    from clipbench import metrics

    rng = random.Random(0)
    for n in (1, 7, 8, 9, 600, 1003):
        flags = [rng.random() < 0.7 for _ in range(n)]
        packed = scoring.pack_correct(flags)
        assert packed["n"] == n and scoring.correct_count(packed) == sum(flags)
        # bit for bit the number metrics.accuracy computes from the predictions themselves
        preds, labels = torch.tensor([0 if f else 1 for f in flags]), torch.zeros(n, dtype=torch.long)
        assert scoring.accuracy_from_correct(packed) == metrics.accuracy(preds, labels)


@pytest.mark.parametrize("packed, message", [
    ({"n": 8}, "exactly 'n' and 'bits'"),
    ({"n": 0, "bits": ""}, "'n' must be a whole number"),
    ({"n": True, "bits": "AA=="}, "'n' must be a whole number"),
    ({"n": 8, "bits": "AAAAAAAA"}, "base64 of 1 bytes"),
    ({"n": 8, "bits": "AAAA"}, "exactly 8 bits"),  # right length, but 3 bytes
    ({"n": 8, "bits": "!!=="}, "not valid base64"),
    ({"n": 3, "bits": "/w=="}, "exactly 3 bits"),  # 0xff: bits set past n
])
def test_malformed_correctness_is_refused(packed, message):
    with pytest.raises(ValueError, match=message):
        scoring.correct_count(packed)


def _bits(flags):
    return scoring.pack_correct(flags)


def _run(id_flags, shift_flags, probe_flags, ref_probe_flags, seeds=(1, 2, 3)):
    """A one-task run whose every seed has the given per-image correctness (lists of 0/1)."""
    acc = lambda f: 100.0 * sum(f) / len(f)
    r = ref(id_=50.0, shifts={"s": 40.0}, probes={"p": acc(ref_probe_flags)}, classes=4, probe_classes=10)
    r["correct"] = {"id": _bits([1] * 50 + [0] * 50), "shifts": {"s": _bits([1] * 40 + [0] * 60)},
                    "probes": {"p": _bits(ref_probe_flags)}}
    cells = []
    for seed in seeds:
        c = cell(seed, acc(id_flags[seed]), {"s": acc(shift_flags[seed])}, {"p": acc(probe_flags[seed])})
        c["correct"] = {"id": _bits(id_flags[seed]), "shifts": {"s": _bits(shift_flags[seed])},
                        "probes": {"p": _bits(probe_flags[seed])}}
        cells.append(c)
    return cells, {"t": r}


def _flags(p, n=100, seed=0):
    import random

    rng = random.Random(seed)
    return [int(rng.random() < p) for _ in range(n)]


def test_the_bootstrap_interval_holds_the_score_and_a_run_is_never_apart_from_itself():
    probe = _flags(0.7, seed=9)
    a = _run({s: _flags(0.8, seed=s) for s in (1, 2, 3)}, {s: _flags(0.5, seed=10 + s) for s in (1, 2, 3)},
             {s: _flags(0.65, seed=20 + s) for s in (1, 2, 3)}, probe)
    out = scoring.bootstrap({"a": a, "a again": a}, replicates=200)
    score = scoring.summarise(*a)["overall"]["score"]["mean"]
    lo, hi = out["score"]["a"]
    assert lo <= score <= hi and hi - lo > 1.0
    assert out["difference"][("a", "a again")] == (0.0, 0.0, 0.0)
    assert out["tasks"] == ["t"] and out["seeds"] == [1, 2, 3]
    assert scoring.bootstrap({"a": a, "a again": a}, replicates=200) == out  # the same bytes every time


def test_the_paired_bootstrap_separates_a_real_gap_and_not_noise():
    probe = _flags(0.7, seed=9)
    shift = {s: _flags(0.5, seed=10 + s) for s in (1, 2, 3)}
    probes = {s: _flags(0.65, seed=20 + s) for s in (1, 2, 3)}
    base = {s: _flags(0.6, seed=s) for s in (1, 2, 3)}
    better = {s: [1 if i < 25 else f for i, f in enumerate(base[s])] for s in base}  # right on 25 more images
    tiny = {s: [1 if i == 0 else f for i, f in enumerate(base[s])] for s in base}  # at most one more image
    runs = {"base": _run(base, shift, probes, probe), "better": _run(better, shift, probes, probe),
            "tiny": _run(tiny, shift, probes, probe)}
    out = scoring.bootstrap(runs, replicates=300)
    diff, lo, hi = out["difference"][("base", "better")]
    assert diff < 0 and hi < 0  # told apart
    diff, lo, hi = out["difference"][("base", "tiny")]
    assert lo <= 0 <= hi  # not told apart


def test_the_bootstrapped_base_to_new_harmonic_mean_is_taken_from_the_mean_base_and_new_replicates():
    import numpy as np

    runs = {}
    for name, p in (("a", 0.8), ("b", 0.6)):
        cells, refs = _run({s: _flags(p, seed=s) for s in (1, 2, 3)}, {s: _flags(0.5, seed=10 + s) for s in (1, 2, 3)},
                           {s: _flags(0.65, seed=20 + s) for s in (1, 2, 3)}, _flags(0.7, seed=9))
        refs["t"]["new"], refs["t"]["chance"]["new"] = 40.0, 25.0
        refs["t"]["correct"]["new"] = _bits(_flags(0.4, seed=30))
        for c in cells:
            c["new"] = 30.0
            c["correct"]["new"] = _bits(_flags(0.3, seed=40 + c["seed"]))
        runs[name] = (cells, refs)
    out = scoring.bootstrap(runs, replicates=100, draws=True)
    for name in runs:
        d = out["draws"][name]
        assert np.allclose(d["base_new_hm"], 2 * d["id"] * d["new"] / (d["id"] + d["new"]))
        assert scoring.difference_interval(out, "base_new_hm", "a", "b") is not None


def test_runs_without_correctness_get_no_interval():
    r = ref()
    cells = [cell(1, 70.0, {"s": 50.0}, {"p": 70.0})]
    assert scoring.bootstrap({"old": (cells, {"t": r})})["score"] == {}


ROUNDING = [  # #23.9: one rule, half to even on the stored decimal value
    (44.55, 1, "44.6"), (56.95, 1, "57.0"), (0.05, 1, "0.0"), (0.15, 1, "0.2"), (0.25, 1, "0.2"),
    (2.675, 2, "2.68"), (-0.04, 1, "0.0"), (1.05, 1, "1.0"), (0.65, 1, "0.6"),
]


@pytest.mark.parametrize("x, digits, text", ROUNDING)
def test_one_rounding_rule_for_every_printed_number(x, digits, text):
    from clipbench import formatting

    assert formatting.unsigned_zero(x, digits) == text
    assert formatting.mean_std({"mean": x, "std": x}, digits) == f"{text} ± {text}"


def test_the_left_out_probe_message_never_rounds_onto_the_limit():
    """14.99 is within 5 points of chance 10; printed as 15.0 it read as exactly 5 points."""
    ref = {"id": 50.0, "probes": {"p": 14.99}, "chance": {"id": 10.0, "shifts": {}, "probes": {"p": 10.0}}}
    assert scoring.excluded_probes(ref)["p"] == "pretrained 14.99 is within 5 points of chance 10.0"
