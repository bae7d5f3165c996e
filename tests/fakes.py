"""Fakes shared by the tests: a miniature suite on the procedural world, a counting method, a whole
third-party plugin in a few lines.  Tests import them from here (never from conftest)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipbench import hookimpl
from clipbench.data import world
from clipbench.method import Adapted, Method
from clipbench.models import create_embedded
from clipbench.tasks import Lazy, Suite, Task, TensorImageSet


def world_set(attribute: str, per_class: int, seed: int, **changes) -> Lazy:
    spec = world.with_style(world.ID_SPEC, **changes)

    def build():
        s = world.labelled_set(seed, attribute, per_class, spec)
        return TensorImageSet(torch.from_numpy(s.images), torch.from_numpy(s.attributes[attribute]))

    return Lazy(build)


def mini_suite(name: str = "mini", class_split: bool = False) -> Suite:
    """Two tasks with 12 train / 6 test images a class, one shift and one probe each."""
    shape = Task("shape", list(world.SHAPES), ["a photo of a {}."], world_set("shape", 12, 1),
                 world_set("shape", 6, 2), {"outline": world_set("shape", 6, 3, outline_prob=1.0)},
                 ["size"], class_split=class_split)
    size = Task("size", list(world.SIZES), ["a {} shape."], world_set("size", 12, 4), world_set("size", 6, 5))
    return Suite(name, {"shape": shape, "size": size}, adapt_on=["shape"], default_model="random-tiny",
                 board_shots=2)


class CountingMethod(Method):
    """A fake method: shifts the logit scale so adaptation is observable; counts its calls."""

    name = "counting"
    citation = "clipbench test suite, a fake method"
    calls: list = []

    @dataclass(frozen=True)
    class Config:
        bump: float = 0.0

    config_class = Config

    def adapt(self, model, fewshot, task, config, ctx):
        CountingMethod.calls.append((task.name, fewshot.seed, len(fewshot.labels)))
        return Adapted(model, trainable=0, task=task)


class FakePlugin:
    """A whole third-party plugin in a few lines: a suite, a model source and a method."""

    @hookimpl
    def clipbench_register_methods(self, register):
        register(CountingMethod())

    @hookimpl
    def clipbench_register_suites(self, register):
        register(mini_suite())
        register(mini_suite("mini-split", class_split=True))

    @hookimpl
    def clipbench_register_models(self, register):
        register("random-tiny", lambda pretrained=None, checkpoint=None, device="cpu": create_embedded(seed=0),
                 "random-init embedded architecture, for tests")
