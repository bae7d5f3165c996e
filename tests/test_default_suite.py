"""The default suite tells methods apart, on the shipped weights (issue "An embedded default that tells
methods apart"): each guarantee is a test.

- zero-shot ID accuracy on every task is at least 1.5x chance and at most 90%;
- every shift's zero-shot accuracy is below its task's ID accuracy;
- no probe of any task sits within 5 points of chance for the pretrained model;
- at the validation-chosen (shipped tuned) settings, 16-shot full fine-tuning raises ID accuracy by at
  least 10 points on at least three tasks and costs at least 3 points of mean probe accuracy on at least
  two (read from the committed full-ft result, whose cells another test re-runs bit for bit);
- probes are other datasets, and the pretraining pools are disjoint from every set the suite scores;
- default-b2n: every base and every new half is at least 5 points above chance for the pretrained model.
"""

import json
from pathlib import Path

import pytest

from clipbench import protocol, scoring
from clipbench.suites.default import REAL_TASKS, WORLD_TASKS

pytestmark = pytest.mark.slow

RESULTS = Path(__file__).resolve().parent.parent / "leaderboards" / "results"


@pytest.fixture(scope="module")
def zeroshot_scores(embedded, default_suite):
    ev = protocol.Evaluator()
    return {name: protocol.zeroshot_reference(embedded, default_suite, default_suite.task(name), ev)
            for name in default_suite.adapt_on}


def test_shipped_weights_match_their_checksum(embedded):
    from clipbench.models import EMBEDDED_SHA256, EMBEDDED_WEIGHTS
    import hashlib

    assert hashlib.sha256(EMBEDDED_WEIGHTS.read_bytes()).hexdigest() == EMBEDDED_SHA256.read_text().split()[0]


def test_the_suite_has_five_tasks_with_two_shifts_and_probes_on_other_datasets(default_suite):
    assert len(default_suite.adapt_on) >= 5
    dataset = {"shape": "world", "colour": "world", "clothing": "fashion", "digits": "mnist", "animals": "animals"}
    for name in default_suite.adapt_on:
        task = default_suite.task(name)
        assert len(task.shifts) >= 2, name
        assert task.probes and all(dataset[p] != dataset[name] for p in task.probes), (name, task.probes)
    assert "uci-digits" in default_suite.task("digits").shifts  # a real shift: other writers, other resolution
    assert set(REAL_TASKS) | set(WORLD_TASKS) == set(default_suite.adapt_on)


def test_zeroshot_is_above_chance_and_below_ceiling(default_suite, zeroshot_scores):
    for name, ref in zeroshot_scores.items():
        chance = 100.0 / default_suite.task(name).num_classes
        assert 1.5 * chance <= ref["id"] <= 90.0, (name, ref["id"])


def test_every_shift_hurts_zero_shot(zeroshot_scores):
    for name, ref in zeroshot_scores.items():
        for shift, acc in ref["shifts"].items():
            assert acc < ref["id"], (name, shift, acc, ref["id"])


def test_no_probe_sits_near_chance(zeroshot_scores):
    for name, ref in zeroshot_scores.items():
        assert scoring.excluded_probes(ref) == {}, (name, scoring.excluded_probes(ref))


def _committed(method: str) -> dict:
    [path] = list(RESULTS.glob(f"default__{method}__*.json"))
    return json.loads(path.read_text())


def test_full_finetuning_at_the_tuned_setting_gains_and_forgets(embedded):
    data = _committed("full-ft")
    assert data["config"]["model_fingerprint"] == embedded.fingerprint() and data["config"]["tuned"]
    tasks = scoring.summarise(data["cells"], data["reference"])["tasks"]
    gains = {t: s["id_gain"]["mean"] for t, s in tasks.items()}
    forgetting = {t: s["mean_forgetting"]["mean"] for t, s in tasks.items()}
    assert sum(g >= 10.0 for g in gains.values()) >= 3, gains
    assert sum(f >= 3.0 for f in forgetting.values()) >= 2, forgetting


def test_every_half_of_the_base_to_new_suite_is_above_chance_by_five_points(embedded):
    from clipbench.plugins import collect, get_plugin_manager

    suite = collect(get_plugin_manager(load_entrypoints=False)).suite("default-b2n")
    ev = protocol.Evaluator()
    assert suite.adapt_on == ["shape", "colour", "clothing", "digits", "animals"]
    for name in suite.adapt_on:
        task = suite.task(name)
        assert task.class_split and task.split_rule == "balanced"
        ref = protocol.zeroshot_reference(embedded, suite, task, ev)
        base, new = task.base_new_split()
        assert ref["id"] >= 100 / len(base) + 5 and ref["chance"]["id"] == scoring.chance(len(base)), (name, ref)
        assert ref["new"] >= 100 / len(new) + 5 and ref["chance"]["new"] == scoring.chance(len(new)), (name, ref)
