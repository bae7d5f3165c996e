"""Option values are checked where they come in (``--option``, tuned files, re-run results): types and ranges
from ``option()``, before any work (issue 24, case 4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from clipbench import runner
from clipbench.config import MethodConfig, config_problems, option
from clipbench.errors import ClipbenchError
from clipbench.plugins import collect, get_plugin_manager


@pytest.fixture(scope="module")
def methods():
    return collect(get_plugin_manager(load_entrypoints=False)).methods


REFUSED = [  # (method, option, value as typed or read from JSON, what the sentence says)
    ("linear-probe", "lr", "-1", "linear-probe.lr must be above 0, got -1.0"),
    ("linear-probe", "lr", "0", "must be above 0"),
    ("full-ft", "batch_size", "0", "full-ft.batch_size must be at least 1, got 0"),
    ("saft", "sparsity", "2", "saft.sparsity must be at most 1, got 2.0"),
    ("saft", "sparsity", "-1", "saft.sparsity must be above 0"),
    ("linear-probe", "steps", "-5", "linear-probe.steps must be at least 0, got -5"),
    ("linear-probe", "penalties", "-1", "linear-probe.penalties must be at least 0, got -1.0"),
    ("linear-probe", "penalties", "0.1,-1", "must be at least 0"),
    ("full-ft", "warmup_fraction", "1.5", "must be at most 1"),
    ("aclip", "momentum", "-0.1", "must be at least 0"),
    ("lora", "rank", "0", "must be at least 1"),
    ("full-ft", "lr", [1], "wants a number, got [1]"),  # from a tuned or result file
    ("full-ft", "lr", -1.0, "must be above 0, got -1.0"),
    ("full-ft", "lr", True, "wants a number, got True"),
    ("full-ft", "lr", "x", "wants a float"),
    ("full-ft", "epochs", 2.5, "wants a whole number, got 2.5"),
    ("full-ft", "epochs", True, "wants a whole number, got True"),
    ("lora", "merge", 1, "wants true or false"),
    ("coop", "ctx_init", 3, "wants text"),
    ("aclip", "decay", "linear", "aclip.decay must be one of cosine, constant, got 'linear'"),
    ("bitfit", "decay", "Constant", "must be one of cosine, constant"),
    ("full-ft", "lr", float("inf"), "wants a finite number"),
    ("tip-adapter-f", "search_scale", [7.0], "wants exactly 2 values"),
]


@pytest.mark.parametrize("name, key, value, says", REFUSED, ids=[f"{m}.{k}={v!r}" for m, k, v, _ in REFUSED])
def test_an_option_out_of_range_or_of_the_wrong_type_is_one_sentence(methods, name, key, value, says):
    with pytest.raises(ClipbenchError, match=None) as err:
        methods[name].make_config({key: value})
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


ACCEPTED = [("linear-probe", "steps", "0"), ("tip-adapter-f", "epochs", "0"), ("full-ft", "lr", 1),
            ("full-ft", "lr", "1e-3"), ("saft", "sparsity", "1"), ("wise-ft", "alpha", "1.0"),
            ("linear-probe", "penalties", "0,1"), ("tip-adapter-f", "init_alpha", "1.17"),
            ("aclip", "decay", "cosine")]


@pytest.mark.parametrize("name, key, value", ACCEPTED)
def test_values_in_range_are_accepted(methods, name, key, value):
    methods[name].make_config({key: value})


def test_every_built_in_default_and_search_value_is_in_range(methods):
    for name, method in methods.items():
        defaults = method.config_class()
        assert config_problems(method.config_class, dataclasses.asdict(defaults)) == [], name
        for f in dataclasses.fields(method.config_class):
            for value in f.metadata.get("search", []):
                assert config_problems(method.config_class, {f.name: value}) == [], (name, f.name, value)


def test_declared_ranges_win_over_the_implied_ones():
    @dataclass(frozen=True)
    class Config(MethodConfig):
        shift: float = option(-1.0, "a signed offset")  # a negative default implies no range
        temperature: float = option(0.07, "softmax temperature", above=0.0, high=10.0)
        alpha: float = option(0.01, "L2-SP strength (not a fraction)")

    assert config_problems(Config, {"shift": -5.0, "alpha": 3.0}) == []
    assert config_problems(Config, {"temperature": 0.0}) == ["temperature must be above 0.0, got 0.0"]
    assert config_problems(Config, {"temperature": 11}) == ["temperature must be at most 10.0, got 11"]


def test_a_bad_option_is_refused_before_the_model_loads(methods, monkeypatch):
    registry = collect(get_plugin_manager(load_entrypoints=False))
    monkeypatch.setattr(runner, "load_for", lambda *a, **k: pytest.fail("the model loaded before the check"))
    request = runner.RunRequest(methods=["linear-probe"], options={"linear-probe": {"lr": "-1"}})
    with pytest.raises(ClipbenchError, match="linear-probe.lr must be above 0"):
        runner.execute(request, registry, get_plugin_manager(load_entrypoints=False))


def test_an_implied_range_never_refuses_what_the_method_itself_searches():
    @dataclass(frozen=True)
    class Config:
        scale: float = dataclasses.field(default=1.0, metadata={"search": [-1.0, 1.0, 2.0]})

    assert config_problems(Config, {"scale": -1.0}) == []
