"""The shipped method contract (clipbench.testing) catches the mistakes it exists for."""

from dataclasses import dataclass

import pytest
import torch

from clipbench.method import Adapted, Method
from clipbench.testing import check_method_contract


@dataclass(frozen=True)
class NoConfig:
    pass


class HeadMethod(Method):
    """A head on frozen features, written the one supported way: override logits_from_features."""

    name = "head"
    citation = "clipbench test suite, a linear head"
    config_class = NoConfig

    def adapt(self, model, fewshot, task, config, ctx):
        weight = torch.randn(task.num_classes, 64, generator=ctx.generator)

        class Head(Adapted):
            def logits_from_features(self, features, t):
                if not self.is_own_task(t):
                    return super().logits_from_features(features, t)
                return features @ weight.T

        return Head(model, trainable=weight.numel(), task=task, added=[weight])


def test_a_head_overriding_logits_is_refused_where_it_is_written():
    with pytest.raises(TypeError, match="override logits_from_features"):
        class Documented(Adapted):  # the old documented way: scored as zero-shot from cached embeddings
            def logits(self, images, task):
                return torch.zeros(len(images), task.num_classes)


def test_a_head_scores_the_same_cached_and_uncached_and_counts_what_it_added():
    adapted = check_method_contract(HeadMethod())
    assert adapted.trainable == 6 * 64


class BiasMethod(Method):
    name = "bias"
    citation = "clipbench test suite, moves every bias"
    config_class = NoConfig
    claim = None

    def adapt(self, model, fewshot, task, config, ctx):
        moved = 0
        with torch.no_grad():
            for name, p in model.module.named_parameters():
                if name.endswith("bias"):
                    p.add_(0.01)
                    moved += p.numel()
        return Adapted(model, trainable=moved if self.claim is None else self.claim, task=task)


def test_an_honest_count_passes():
    check_method_contract(BiasMethod())


@pytest.mark.parametrize("claim", [0, 10, 10**9])
def test_a_dishonest_trainable_count_fails(claim):
    method = BiasMethod()
    method.claim = claim
    with pytest.raises(AssertionError, match="trainable"):
        check_method_contract(method)


def test_an_undeclared_head_fails():
    class Hidden(HeadMethod):
        def adapt(self, model, fewshot, task, config, ctx):
            adapted = super().adapt(model, fewshot, task, config, ctx)
            adapted.added = []  # trained a head but does not say so
            return adapted

    with pytest.raises(AssertionError, match="trainable"):
        check_method_contract(Hidden())


class Careless(HeadMethod):
    """A head method that does one careless thing (issue 24): the contract must tell its author."""

    def __init__(self, during_adapt=None, bend=None):
        self.during_adapt, self.bend = during_adapt, bend

    def adapt(self, model, fewshot, task, config, ctx):
        if self.during_adapt is not None:
            self.during_adapt(task)
        adapted = super().adapt(model, fewshot, task, config, ctx)
        if self.bend is not None:
            head, bend = type(adapted), self.bend

            class Bent(head):
                def logits_from_features(self, features, t):
                    return bend(super().logits_from_features(features, t))

            adapted.__class__ = Bent
        return adapted


CARELESS = {
    "sorts class names": (dict(during_adapt=lambda task: task.classnames.sort(reverse=True)), "changed the task"),
    "drops a probe": (dict(during_adapt=lambda task: task.probes.clear()), "changed the task"),
    "grad mode off": (dict(during_adapt=lambda task: torch.set_grad_enabled(False)), "global state changed \\(grad\\)"),
    "float64 default": (dict(during_adapt=lambda task: torch.set_default_dtype(torch.float64)), "dtype"),
    "threads": (dict(during_adapt=lambda task: torch.set_num_threads(torch.get_num_threads() + 1)), "threads"),
    "deterministic": (dict(during_adapt=lambda task: torch.use_deterministic_algorithms(True, warn_only=True)),
                      "deterministic"),
    "one row broadcast": (dict(bend=lambda logits: logits[:1]), "not \\(N, C\\)"),
    "extra classes": (dict(bend=lambda logits: torch.cat([logits, logits[:, :3]], dim=1)), "not \\(N, C\\)"),
    "nan": (dict(bend=lambda logits: logits * float("nan")), "non-finite"),
}


@pytest.mark.parametrize("case", sorted(CARELESS))
def test_the_contract_catches_a_careless_method(case):
    kwargs, says = CARELESS[case]
    try:
        with pytest.raises(AssertionError, match=says):
            check_method_contract(Careless(**kwargs))
        # the contract put torch back as it found it, so the next test is not broken by this one
        assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("claim", [-5, 10**20])
def test_a_trainable_count_out_of_range_fails(claim):
    method = BiasMethod()
    method.claim = claim
    with pytest.raises(AssertionError, match="trainable"):
        check_method_contract(method)
