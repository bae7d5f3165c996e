"""verify re-runs a result's seeds from its stored config: a fabricated number is caught wherever it is."""

import copy
import json

import pytest

from clipbench import runner, verify


@pytest.fixture
def submitted(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2, 3],
                                              out_dir=tmp_path / "results"), reg, pm)
    return json.loads(path.read_text())


def test_an_honest_result_verifies_on_every_seed(submitted, registry):
    pm, reg = registry
    assert verify.verify(submitted, reg, pm, tolerance=0.0) == []


def test_inflating_the_seeds_after_the_first_is_caught(submitted, registry):
    pm, reg = registry
    tampered = copy.deepcopy(submitted)
    for cell in tampered["cells"]:
        if cell["seed"] in (2, 3):
            cell["id"] += 8.0
    problems = verify.verify(tampered, reg, pm)
    assert any("shape seed 2 id: submitted" in p for p in problems), problems
    assert any("shape seed 3 id: submitted" in p for p in problems), problems


def test_shuffled_correctness_with_the_same_accuracy_is_caught(submitted, registry):
    """Bits that still add up to the accuracy but mark other images right would fool the paired bootstrap."""
    from clipbench import scoring

    pm, reg = registry
    tampered = copy.deepcopy(submitted)
    cell = next(c for c in tampered["cells"] if c["seed"] == 1 and c["task"] == "shape")
    n, raw = scoring.packed_parts(cell["correct"]["id"])
    flags = [bool(int.from_bytes(raw, "little") >> i & 1) for i in range(n)]
    assert 0 < sum(flags) < n
    cell["correct"]["id"] = scoring.pack_correct(flags[::-1] if flags[::-1] != flags else flags[1:] + flags[:1])
    problems = verify.verify(tampered, reg, pm, seeds=[1])
    assert any("shape seed 1 id:" in p and "classified differently" in p for p in problems), problems


def test_a_lowered_zero_shot_reference_is_caught(submitted, registry):
    pm, reg = registry
    tampered = copy.deepcopy(submitted)
    tampered["reference"]["shape"]["id"] -= 10.0
    problems = verify.verify(tampered, reg, pm)
    assert any("shape zero-shot reference id: submitted" in p for p in problems), problems


def test_a_changed_chance_level_is_caught(submitted, registry):
    pm, reg = registry
    tampered = copy.deepcopy(submitted)
    tampered["reference"]["shape"]["chance"]["probes"]["size"] = 10.0
    assert any("chance" in p for p in verify.verify(tampered, reg, pm, seeds=[1]))


def test_seeds_are_the_verifiers_choice(submitted, registry):
    pm, reg = registry
    assert "not in the result's seeds" in verify.verify(submitted, reg, pm, seeds=[9])[0]
    drawn = {verify.draw_seed(submitted) for _ in range(60)}
    assert drawn == {1, 2, 3}


@pytest.mark.parametrize("method, task", [
    ("zeroshot", None), ("linear-probe", None),  # no training; a frozen encoder (scored from the cache)
    pytest.param("full-ft", "digits", marks=pytest.mark.slow),  # every weight trains: the cell the default suite's guarantees are read from
    pytest.param("saft", "shape", marks=pytest.mark.slow),  # a sparse mask
    pytest.param("orthcr", "shape", marks=pytest.mark.slow),  # a reparametrisation (Cayley rotations)
    pytest.param("coop", "shape", marks=pytest.mark.slow),  # a prompt learner, also scored on probes
])
def test_a_committed_cell_reproduces_its_numbers_exactly(method, task):
    """Accuracies are exact fractions computed once: re-running a published cell gives the same bits,
    image by image, one method of each kind, so a speed-up that moves a single image is caught."""
    from pathlib import Path

    from clipbench.plugins import collect, get_plugin_manager

    results_dir = Path(__file__).resolve().parent.parent / "leaderboards" / "results"
    [path] = list(results_dir.glob(f"default__{method}__*.json"))
    data = json.loads(path.read_text())
    if task is not None:  # one task of the published run
        data["config"]["tasks"] = [task]
        data["cells"] = [c for c in data["cells"] if c["task"] == task]
        data["reference"] = {task: data["reference"][task]}
    pm = get_plugin_manager(load_entrypoints=False)
    assert verify.verify(data, collect(pm), pm, seeds=[2], tolerance=0.0) == []


def _committed(method, task):
    from pathlib import Path

    results_dir = Path(__file__).resolve().parent.parent / "leaderboards" / "results"
    [path] = list(results_dir.glob(f"default__{method}__*.json"))
    data = json.loads(path.read_text())
    data["config"]["tasks"] = [task]
    data["cells"] = [c for c in data["cells"] if c["task"] == task]
    data["reference"] = {task: data["reference"][task]}
    return data


def _raise_images(record, key, count):
    """A careful forger: ``count`` more images right in one set, bits and accuracy rewritten together."""
    from clipbench import scoring

    packed = record["correct"][key]
    n, raw = scoring.packed_parts(packed)
    value = int.from_bytes(raw, "little")
    flipped = 0
    for i in range(n):
        if flipped < count and not value >> i & 1:
            value |= 1 << i
            flipped += 1
    record["correct"][key] = scoring.pack_correct([bool(value >> i & 1) for i in range(n)])
    record[key] = scoring.accuracy_from_correct(record["correct"][key])


def _plugins():
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    return pm, collect(pm)


def test_half_a_percent_of_forged_images_is_caught_where_the_environment_matches():
    """#23.1: verify accepted 0.5 points and 0.5% of a set's images; a re-run in the recorded environment
    reproduces every image, so one forged image is one too many."""
    data = _committed("zeroshot", "digits")
    cell = next(c for c in data["cells"] if c["seed"] == 2)
    _raise_images(cell, "id", cell["correct"]["id"]["n"] // 200)  # floor(0.5% of n)
    said = []
    pm, reg = _plugins()
    problems = verify.verify(data, reg, pm, seeds=[2], tell=said.append)
    assert any("digits seed 2 id: submitted" in p for p in problems), problems
    assert any("image by image, exactly" in line for line in said), said


def test_another_environment_gets_a_measured_and_stated_tolerance(submitted, registry):
    pm, reg = registry
    tampered = copy.deepcopy(submitted)
    tampered["provenance"]["versions"]["torch"] = "0.0.1"
    cell = next(c for c in tampered["cells"] if c["seed"] == 1 and c["task"] == "shape")
    _raise_images(cell, "id", 1)
    said = []
    problems = verify.verify(tampered, reg, pm, seeds=[1], tell=said.append)
    line = next(line for line in said if "environments differ" in line)
    assert "torch '0.0.1' vs" in line and "measured" in line and "0.00%" in line
    assert any("shape seed 1 id: submitted" in p for p in problems), problems


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_a_tolerance_that_is_not_finite_and_non_negative_is_refused(submitted, registry, bad):
    from clipbench.errors import ClipbenchError

    pm, reg = registry
    with pytest.raises(ClipbenchError, match="--tolerance must be a finite number"):
        verify.verify(submitted, reg, pm, seeds=[1], tolerance=bad)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "x"])
def test_the_cli_refuses_a_tolerance_of_nan_or_inf(tmp_path, text):
    from clipbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "verify", str(tmp_path / "x.json"), "--tolerance", text])
    assert exc.value.code == 2


def _costed(seconds=20.0, params=1000, device_name="x86_64"):
    cell = {"task": "t", "seed": 1, "cost": {"adapt_seconds": seconds, "peak_memory_mb": 0.0,
                                             "trainable_params": params}}
    return {"provenance": {"device": "cpu", "device_name": device_name}, "cells": [cell]}


COST_FORGERIES = [  # #23.5: the parameter count is refused; time outside the band is flagged
    ("trainable parameters / 100", _costed(params=10), 0, "cost.trainable_params: submitted 10, re-run 1000"),
    ("adapt seconds / 10", _costed(seconds=2.0), 1, "flagged: t seed 1 cost.adapt_seconds: submitted 2, re-run 20"),
    ("adapt seconds x 10", _costed(seconds=200.0), 1, "cost.adapt_seconds: submitted 200, re-run 20"),
]


@pytest.mark.parametrize("label, forged, kind, message", COST_FORGERIES, ids=[c[0] for c in COST_FORGERIES])
def test_costs_are_compared_with_the_rerun(label, forged, kind, message):
    out = verify.compare_costs(forged, _costed())
    assert any(message in p for p in out[kind]), out
    assert "0.25x to 4x" in out[2]


def test_costs_within_the_band_or_on_other_hardware_pass_and_say_so():
    assert verify.compare_costs(_costed(seconds=25.0), _costed())[:2] == ([], [])
    problems, flags, said = verify.compare_costs(_costed(seconds=2.0, device_name="other"), _costed())
    assert problems == flags == [] and "not compared (another hardware class)" in said
    assert verify.compare_costs(_costed(params=10, device_name="other"), _costed())[0]  # params: always exact


def test_draw_catches_one_forged_seed_with_probability_at_least_0_9(submitted):
    """#23.6: one seed of three caught a single forged seed 1 time in 3."""
    assert verify.draw_seeds(submitted) == [1, 2, 3]
    ten = {"cells": [{"seed": s} for s in range(1, 11)]}
    draws = [verify.draw_seeds(ten) for _ in range(20)]
    assert all(len(d) == 9 and len(set(d)) == 9 for d in draws)
