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


class _VisualPrompt:
    """A method whose only change is a visual prompt added to the image by a forward pre-hook: the image
    tower's weights stay the pretrained ones, its embeddings do not."""

    name = "visual-prompt"

    def make_config(self, overrides):
        return None

    def adapt(self, model, fewshot, task, config, ctx):
        from clipbench.method import Adapted

        prompt = torch.linspace(-3.0, 3.0, model.image_size).expand(3, model.image_size, -1)
        model.module.visual.register_forward_pre_hook(lambda module, args: (args[0] + prompt,) + args[1:])
        return Adapted(model, trainable=prompt.numel(), task=task)


def test_a_visual_prompt_by_forward_pre_hook_is_scored_from_its_own_embeddings(tmp_path):
    """The cache canary: the weights say "pretrained", the image path does not; cached and uncached
    scoring must agree (before the canary the cached run scored the pretrained embeddings)."""
    model = create_embedded(seed=0)
    model.module.eval()
    suite = mini_suite()
    task = suite.task("shape")
    records = []
    for cache in (EmbeddingCache(tmp_path), None):
        evaluator = protocol.Evaluator(cache=cache)
        evaluator.bind(model)
        protocol.zeroshot_reference(model, suite, task, evaluator)
        cell = protocol.run_cell(_VisualPrompt(), None, model, suite, task, 1, 2, evaluator,
                                 torch.device("cpu"), protocol.SilentReporter())
        records.append(cell["correct"])
    cached, uncached = records
    assert cached == uncached


def test_the_canary_still_lets_an_untouched_image_tower_use_the_cache(tmp_path):
    from clipbench.method import Adapted

    model = create_embedded(seed=0)
    model.module.eval()
    evaluator = protocol.Evaluator(cache=EmbeddingCache(tmp_path))
    evaluator.bind(model)
    import copy

    assert evaluator.encoder_is_pretrained(Adapted(copy.deepcopy(model)))
