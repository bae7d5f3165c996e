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
