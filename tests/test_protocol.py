"""The standard protocol: one cell's record (accuracies with their per-image correctness, costs, the cache
state of the adaptation) and the zero-shot reference it is measured against."""

import torch

from clipbench import protocol, scoring
from clipbench.augment import ViewPlan, encode_views, view_seed
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


# --- A harness that third-party methods cannot break (issue 24) -------------------------------------------

import math  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402

import pytest  # noqa: E402

from clipbench.errors import ClipbenchError  # noqa: E402
from clipbench.method import Adapted, Method  # noqa: E402


@_dataclass(frozen=True)
class _NoOptions:
    pass


class Misbehaving(Method):
    """A method whose adapt and Adapted do what ``behave`` says (zero-shot otherwise)."""

    citation = "clipbench test suite, a misbehaving method"
    config_class = _NoOptions

    def __init__(self, name="bad", adapt=None, logits=None, trainable=0):
        self.name, self._adapt, self._logits, self._trainable = name, adapt, logits, trainable

    def adapt(self, model, fewshot, task, config, ctx):
        if self._adapt is not None:
            self._adapt(model, fewshot, task)
        adapted = _Adapted(model, trainable=self._trainable, task=task)
        adapted.bend = self._logits
        return adapted


class _Adapted(Adapted):
    bend = None

    def logits_from_features(self, features, task):
        logits = super().logits_from_features(features, task)
        return logits if self.bend is None else self.bend(logits)


@pytest.fixture(scope="module")
def _shared(tmp_path_factory):
    model = create_embedded(seed=0)
    model.module.eval()
    return model, mini_suite(), EmbeddingCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def setup(_shared):
    """The model, suite and a cached evaluator every test here shares (a fresh model where it must change)."""
    model, suite, cache = _shared

    def make(fresh_model=False):
        m = model.clone() if fresh_model else model
        evaluator = protocol.Evaluator(cache=cache)
        evaluator.bind(m)
        return m, suite, evaluator

    return make


def _run(method, model, suite, evaluator, seed=1, task="shape"):
    return protocol.run_cell(method, method.make_config({}), model, suite, suite.task(task), seed, 2, evaluator,
                             torch.device("cpu"), protocol.SilentReporter())


def _raise(exc):
    raise exc


UNTRUSTED = {
    "one row broadcast": dict(logits=lambda l: l[:1]),
    "three extra classes": dict(logits=lambda l: torch.cat([l, l[:, :3]], dim=1)),
    "transposed": dict(logits=lambda l: l.T),
    "nan": dict(logits=lambda l: l * float("nan")),
    "inf": dict(logits=lambda l: l + float("inf")),
    "not a tensor": dict(logits=lambda l: l.tolist()),
    "trainable negative": dict(trainable=-5),
    "trainable none": dict(trainable=None),
    "trainable huge": dict(trainable=10**20),
    "trainable bool": dict(trainable=True),
    "trainable float": dict(trainable=1.5),
    "raises in adapt": dict(adapt=lambda *a: _raise(ValueError("the support set is too small"))),
    "raises in scoring": dict(logits=lambda l: _raise(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))),
}


@pytest.mark.parametrize("case", sorted(UNTRUSTED))
def test_a_method_that_breaks_the_contract_is_one_sentence_naming_method_task_and_seed(case, setup):
    model, suite, evaluator = setup()
    with pytest.raises(protocol.MethodError) as err:
        _run(Misbehaving(**UNTRUSTED[case]), model, suite, evaluator, seed=3)
    message = str(err.value)
    assert isinstance(err.value, ClipbenchError)
    assert "'bad'" in message and "'shape'" in message and "seed 3" in message, message
    assert "\n" not in message
    if case == "raises in adapt":
        assert "ValueError: the support set is too small" in message
        assert isinstance(err.value.__cause__, ValueError)  # the full traceback for --debug


def test_honest_trainable_counts_are_recorded_as_ints(setup):
    model, suite, evaluator = setup()
    cell = _run(Misbehaving(trainable=torch.tensor(7)), model, suite, evaluator)
    assert cell["cost"]["trainable_params"] == 7 and type(cell["cost"]["trainable_params"]) is int


def test_a_method_that_sorts_the_class_names_in_place_changes_nothing_for_the_next(setup):
    model, suite, evaluator = setup()
    shape = suite.task("shape")
    names = list(shape.classnames)
    ref = protocol.zeroshot_reference(model, suite, shape, evaluator)
    honest = _run(Misbehaving("honest"), model, suite, evaluator)

    def vandal(model, fewshot, task):
        task.classnames.sort(reverse=True)
        task.templates.clear()
        task.probes.clear()

    _run(Misbehaving("vandal", adapt=vandal), model, suite, evaluator)
    assert shape.classnames == names and shape.templates and shape.probes == ["size"]
    assert _run(Misbehaving("honest"), model, suite, evaluator)["id"] == honest["id"]
    fresh = protocol.Evaluator()
    fresh.bind(model)
    assert protocol.zeroshot_reference(model, suite, shape, fresh)["id"] == ref["id"]


def test_a_method_that_sorts_class_names_while_scored_changes_nothing_for_the_next(setup):
    model, suite, evaluator = setup()
    names = {t: list(suite.task(t).classnames) for t in ("shape", "size")}

    class Sorting(_Adapted):
        def logits_from_features(self, features, task):
            task.classnames.sort()
            return super().logits_from_features(features, task)

    class SortingMethod(Misbehaving):
        def adapt(self, model, fewshot, task, config, ctx):
            return Sorting(model, task=task)

    _run(SortingMethod("sorting"), model, suite, evaluator)
    assert {t: suite.task(t).classnames for t in names} == names


def test_a_method_gets_no_handle_to_the_shared_pretrained_model(setup):
    model, suite, evaluator = setup()
    seen = {}

    def reach(model, fewshot, task):
        seen["self"] = getattr(fewshot.features_from, "__self__", None)

    _run(Misbehaving(adapt=reach), model, suite, evaluator)
    assert seen["self"] is None


def test_a_method_cannot_make_the_harness_cache_other_pixels_under_its_support_sets_name(setup, tmp_path):
    """The harness takes the support subset before the method sees the sample: a pool swapped for other
    pixels under the real fingerprint is neither encoded nor cached, and the method gets its own images' features."""
    from clipbench.cache import EmbeddingCache
    from clipbench.tasks import TensorImageSet

    model, suite, _ = setup()
    evaluator = protocol.Evaluator(cache=EmbeddingCache(tmp_path))
    evaluator.bind(model)
    seen = {}

    def swap(working, fewshot, task):
        real = fewshot.pool
        fake = TensorImageSet(torch.zeros_like(real.load(torch.arange(len(real)))), real.labels,
                              fingerprint=real.fingerprint)
        fewshot.pool = fake
        seen["features"] = fewshot.features(working)
        seen["own"] = torch.cat([working.encode_image(real.load(fewshot.indices))])
        seen["views"] = fewshot.views(working, 2, "keys")
        seen["own views"] = encode_views(working.encode_image, real.load(fewshot.indices),
                                         ViewPlan(2, view_seed(fewshot.seed, "keys")))

    _run(Misbehaving(adapt=swap), model, suite, evaluator)
    assert torch.allclose(seen["features"], seen["own"], atol=1e-5)
    assert torch.allclose(seen["views"], seen["own views"], atol=1e-5)


def test_cached_views_are_the_views_the_model_encodes_bit_for_bit_and_read_back(embedded, default_suite, tmp_path):
    """A frozen-encoder method's augmented views come from the embedding cache: the same numbers as encoding
    them, and a second cell (another run) reads them instead of encoding again."""
    from clipbench.cache import EmbeddingCache
    from clipbench.tasks import sample_fewshot

    task = default_suite.task("shape")
    evaluator = protocol.Evaluator(cache=EmbeddingCache(tmp_path))
    evaluator.bind(embedded)
    fewshot = sample_fewshot(task.train.value, task.num_classes, 4, 1, task.name)
    protocol.attach_sources(fewshot, evaluator)
    cached = fewshot.views(embedded, 3, "train")
    assert evaluator.cache.misses == 1
    plain = sample_fewshot(task.train.value, task.num_classes, 4, 1, task.name)
    assert torch.equal(cached, plain.views(embedded, 3, "train"))  # encoded without the harness
    again = sample_fewshot(task.train.value, task.num_classes, 4, 1, task.name)
    protocol.attach_sources(again, evaluator)
    assert torch.equal(again.views(embedded, 3, "train"), cached) and evaluator.cache.hits == 1
    tuned = embedded.clone()
    with torch.no_grad():
        next(tuned.module.visual.parameters()).add_(0.01)
    assert fewshot.views_from(tuned, 3, "train") is None  # another encoder: never the cache


def test_a_method_cannot_make_the_harness_cache_views_under_another_key(embedded, default_suite, tmp_path):
    """The harness makes the view plan (and so the cache key) from plain values: a plan object of the method's
    own, whose key names the honest entry but whose draws are others, is refused and nothing is stored."""
    from clipbench.augment import ViewPlan
    from clipbench.cache import EmbeddingCache
    from clipbench.tasks import sample_fewshot

    task = default_suite.task("shape")
    evaluator = protocol.Evaluator(cache=EmbeddingCache(tmp_path))
    evaluator.bind(embedded)
    fewshot = sample_fewshot(task.train.value, task.num_classes, 4, 1, task.name)
    protocol.attach_sources(fewshot, evaluator)
    honest = ViewPlan(10, view_seed(1, "train"))

    class Forged(ViewPlan):
        def key(self):
            return honest.key()

    support = fewshot.pool.subset(fewshot.indices)
    with pytest.raises(TypeError, match="ViewPlan"):
        evaluator.pretrained_views(embedded, support, Forged(10, 7, scale=(0.01, 0.02)))
    for bad in ((0, "train"), (10**6, "train"), (2.5, "train"), (10, 3)):
        with pytest.raises(ValueError):
            fewshot.views_from(embedded, *bad)
    with pytest.raises(ValueError, match="scale"):
        fewshot.views_from(embedded, 2, "train", (0.9, 0.1))
    assert evaluator.cache.misses == 0 and not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("reach", ["test", "shift"])
def test_a_method_that_reads_a_test_or_shift_set_while_adapting_is_stopped(setup, reach):
    model, suite, evaluator = setup()

    def peek(working, fewshot, task):
        (task.test if reach == "test" else next(iter(task.shifts.values()))).value

    with pytest.raises(ClipbenchError, match=f"Method 'bad' touched the {reach} .*of task 'shape': a method adapts "
                                             "on its support set only"):
        _run(Misbehaving(adapt=peek), model, suite, evaluator)


def test_a_method_that_changes_the_shared_model_anyway_is_refused_and_its_cell_not_recorded(setup):
    model, suite, evaluator = setup(fresh_model=True)

    def vandal(working, fewshot, task):
        with torch.no_grad():
            model.module.logit_scale.add_(1.0)  # the shared model, found some other way

    with pytest.raises(protocol.MethodError, match="changed the shared pretrained model on task 'shape', seed 1"):
        _run(Misbehaving(adapt=vandal), model, suite, evaluator)


TORCH_STATE = {
    "grad mode": (lambda: torch.set_grad_enabled(False), torch.is_grad_enabled),
    "default dtype": (lambda: torch.set_default_dtype(torch.float64), torch.get_default_dtype),
    "threads": (lambda: torch.set_num_threads(torch.get_num_threads() + 1), torch.get_num_threads),
    "deterministic": (lambda: torch.use_deterministic_algorithms(True, warn_only=True),
                      torch.are_deterministic_algorithms_enabled),
    "anomaly": (lambda: torch.set_anomaly_enabled(True), torch.is_anomaly_enabled),
    "matmul precision": (lambda: torch.set_float32_matmul_precision("medium"), torch.get_float32_matmul_precision),
    "rng": (lambda: torch.manual_seed(12345), lambda: torch.get_rng_state().tolist()),
    "autocast": (lambda: torch.set_autocast_enabled("cpu", True), lambda: torch.is_autocast_enabled("cpu")),
}


@pytest.mark.parametrize("case", sorted(TORCH_STATE))
@pytest.mark.parametrize("fails", [False, True])
def test_torch_global_state_is_put_back_after_every_cell(case, fails, setup):
    change, read = TORCH_STATE[case]
    model, suite, evaluator = setup()
    before = read()

    def leave_changed(*args):
        change()
        if fails:
            raise ValueError("and then failed")

    try:
        try:
            _run(Misbehaving(adapt=leave_changed), model, suite, evaluator)
            assert not fails
        except protocol.MethodError:  # its own cell may fail (float64 weights meet float32 ones); never the next
            assert fails or case == "default dtype"
        assert read() == before
        _run(Misbehaving("next"), model, suite, evaluator)  # the next method runs as usual
    finally:  # never leak into the other tests, whatever the code under test did
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        torch.use_deterministic_algorithms(False)
        torch.set_anomaly_enabled(False)
        torch.set_float32_matmul_precision("highest")
        torch.set_autocast_enabled("cpu", False)


def test_a_method_that_leaves_grad_mode_off_does_not_crash_the_next_one(setup):
    model, suite, evaluator = setup()
    _run(Misbehaving(adapt=lambda *a: torch.set_grad_enabled(False)), model, suite, evaluator)
    try:
        cell, _ = _cell("linear-probe", None)  # trains with autograd
        assert math.isfinite(cell["id"])
    finally:
        torch.set_grad_enabled(True)


def test_a_full_fine_tuning_that_diverged_is_refused_not_scored_as_always_class_0(setup):
    reg = collect(get_plugin_manager(load_entrypoints=False))
    method = reg.method("full-ft")
    model, suite, evaluator = setup()
    with pytest.raises(protocol.MethodError, match="'full-ft' on task 'shape', seed 1 returned non-finite logits"):
        protocol.run_cell(method, method.make_config({"lr": 1e3, "epochs": 1}), model, suite, suite.task("shape"), 1,
                          2, evaluator, torch.device("cpu"), protocol.SilentReporter())
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


def test_a_head_on_raw_features_is_scored_the_same_from_the_cache_and_from_images(embedded, default_suite, tmp_path):
    """An Adapted that declares raw_features gets the image tower's unnormalised output on both paths."""
    from clipbench.cache import EmbeddingCache
    from clipbench.method import Adapted

    task = default_suite.task("shape")
    seen = []

    class NormHead(Adapted):
        raw_features = True

        def logits_from_features(self, features, t):
            seen.append(features.norm(dim=1))
            return features[:, :t.num_classes] * features.norm(dim=1, keepdim=True)

    cached = protocol.Evaluator(cache=EmbeddingCache(tmp_path))
    cached.bind(embedded)
    plain = protocol.Evaluator()
    images = task.test.value
    a = cached.correct(NormHead(embedded, task=task), images, task, "raw")
    b = cached.correct(NormHead(embedded, task=task), images, task, "raw")  # read back from the cache
    c = plain.correct(NormHead(embedded, task=task), images, task, "raw")
    assert torch.equal(a, b) and torch.equal(a, c) and cached.cache.hits >= 1
    assert all(not torch.allclose(n, torch.ones_like(n)) for n in seen)
