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


@pytest.mark.parametrize("method, task", [("zeroshot", None), ("linear-probe", None), ("full-ft", "digits")])
def test_a_committed_cell_reproduces_its_numbers_exactly(method, task):
    """Accuracies are exact fractions computed once: re-running a published cell gives the same bits,
    image by image (full-ft on one task: the cell the default suite's guarantees are read from)."""
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
