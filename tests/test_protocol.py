"""The standard protocol: one cell's record (accuracies with their per-image correctness, costs, the cache
state of the adaptation) and the zero-shot reference it is measured against."""

import torch

from clipbench import protocol, scoring
from clipbench.cache import EmbeddingCache
from clipbench.models import create_embedded
from clipbench.plugins import collect, get_plugin_manager
from tests.fakes import FakePlugin, mini_suite


def _cell(method_name, cache, seed=1, **overrides):
    reg = collect(get_plugin_manager(load_entrypoints=False, extra=[FakePlugin()]))
    method = reg.method(method_name)
    model = create_embedded(seed=0)
    model.module.eval()
    suite = mini_suite()
    evaluator = protocol.Evaluator(cache=cache)
    evaluator.bind(model)
    task = suite.task("shape")
    ref = protocol.zeroshot_reference(model, suite, task, evaluator)
    cell = protocol.run_cell(method, method.make_config(overrides), model, suite, task, seed, 2, evaluator,
                             torch.device("cpu"), protocol.SilentReporter())
    return cell, ref


def test_a_cell_keeps_which_images_were_right_and_its_accuracies_recompute_from_them(tmp_path):
    cell, ref = _cell("linear-probe", EmbeddingCache(tmp_path))
    for record in (cell, ref):
        packed, accs = scoring.record_sets(record), scoring.record_accuracies(record)
        assert set(packed) == set(accs) == {"id", "shifts.outline", "probes.size"}
        for key, value in accs.items():
            assert scoring.accuracy_from_correct(packed[key]) == value
    assert cell["correct"]["id"]["n"] == ref["correct"]["id"]["n"] == 36  # 6 shapes x 6 test images


def test_the_cost_says_whether_the_support_embeddings_came_from_the_cache(tmp_path):
    cache = EmbeddingCache(tmp_path)
    first, _ = _cell("linear-probe", cache)
    second, _ = _cell("linear-probe", cache)
    assert (first["cost"]["cache"], second["cost"]["cache"]) == ("cold", "warm")
    encodes_itself, _ = _cell("full-ft", cache, epochs=1)
    assert encodes_itself["cost"]["cache"] == "unused"
    assert _cell("linear-probe", None)[0]["cost"]["cache"] == "off"
