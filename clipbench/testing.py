"""The method contract test, shipped for plugin authors (loaded by pytest as plugin `clipbench`).

In your plugin's tests::

    def test_contract(clipbench_contract):
        clipbench_contract(MyMethod())

It adapts the method on a 2-shot sample of the default suite's shape task with
the embedded model and checks what every method must do: register cleanly,
have a citation and a config dataclass with defaults, return an ``Adapted``
that scores any task the same way from cached embeddings as from images with
finite logits of shape (N, C), report a trainable-parameter count (a whole number
from 0 to the model's size plus what was added) that matches what changed or was
added, and leave as it found them the pretrained model it was not given, the task
(class names in their order, templates, shifts, probes) and torch's global state
(grad mode, default dtype, threads, deterministic flags, autocast).
"""

from __future__ import annotations

import dataclasses

import pytest


def parameter_changes(before, after, skip=()) -> tuple[int, int]:
    """(entries that differ, entries of the tensors that differ) between two modules' parameters."""

    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    assert a.keys() == b.keys(), "adapt() must keep the model's parameter names (merge parametrizations)"
    entries = tensors = 0
    for name, p in a.items():
        if name in skip:
            continue
        moved = int((p.detach() != b[name].detach()).sum())
        if moved:
            entries += moved
            tensors += p.numel()
    return entries, tensors


def added_entries(adapted) -> int:
    """Entries of the tensors and modules an Adapted declares in ``added`` (the harness's count, after
    checking that ``added`` holds only tensors and modules)."""
    import torch

    from clipbench.protocol import added_entries as count

    for item in adapted.added:
        if not isinstance(item, (torch.nn.Module, torch.Tensor)):
            raise AssertionError(f"Adapted.added holds a {type(item).__name__}; declare tensors or modules")
    return count(adapted)


def check_method_contract(method, shots: int = 2, seed: int = 1, overrides: dict | None = None):
    """Run one small adaptation and assert the contract; returns the Adapted model.

    Pass ``overrides`` at which the method actually trains (enough learning rate
    for its weights to move): the trainable count is checked against the change.
    """
    import tempfile

    import torch

    from clipbench.cache import EmbeddingCache
    from clipbench.method import AdaptContext, Adapted
    from clipbench.models import load_embedded
    from clipbench.protocol import Evaluator, MethodError, TorchState, check_trainable
    from clipbench.suites.default import build_default_suite
    from clipbench.tasks import sample_fewshot

    assert isinstance(method.name, str) and method.name == method.name.strip().lower() and method.name, \
        "a method's name is a lowercase word users type after --method"
    assert isinstance(method.citation, str) and len(method.citation) > 10, "cite the paper the method comes from"
    assert dataclasses.is_dataclass(method.config_class), "config_class must be a dataclass"
    config = method.make_config(overrides or {})  # every field needs a default (the paper's)

    suite = build_default_suite()
    task = suite.task("shape")
    probe = suite.task("colour")
    fewshot = sample_fewshot(task.train.value, task.num_classes, shots, seed, task.name)
    pretrained = load_embedded()
    before = pretrained.fingerprint()
    working = pretrained.clone()
    total_params = working.num_parameters()
    as_given = task_state(task), task_state(probe)
    torch_state = TorchState.capture()
    try:
        adapted = method.adapt(working, fewshot, task, config, AdaptContext(torch.device("cpu"), seed))
        changed = torch_state.changed(TorchState.capture())
    finally:
        torch_state.restore()
    assert isinstance(adapted, Adapted), "adapt() must return a clipbench.method.Adapted"
    assert pretrained.fingerprint() == before, "adapt() changed a model it was not given"
    assert (task_state(task), task_state(probe)) == as_given, \
        "adapt() changed the task it was given (class names, templates, shifts or probes); copy what you change"
    assert not changed, (f"adapt() left torch's global state changed ({', '.join(changed)}); use context "
                         "managers (torch.no_grad(), torch.enable_grad()) or put back what you set")

    # The trainable count is what changed or was added: at least every entry that moved (plus what was
    # added), at most every entry of the tensors that moved (plus what was added).
    assert isinstance(adapted.trainable, int) and not isinstance(adapted.trainable, bool), \
        f"trainable must be an int, got {adapted.trainable!r}"
    try:
        check_trainable(adapted, total_params, method.name)  # 0 <= trainable <= the model plus what was added
    except MethodError as exc:
        raise AssertionError(str(exc)) from None
    moved, moved_tensors = parameter_changes(pretrained.module, adapted.model.module, skip=adapted.generated)
    added = added_entries(adapted)
    assert moved + added <= adapted.trainable <= moved_tensors + added, (
        f"{method.name}: trainable = {adapted.trainable:,} but {moved:,} weight entries moved (in tensors of "
        f"{moved_tensors:,} entries) and {added:,} entries were added; declare what was added in "
        "Adapted(added=...) and merged-update targets in Adapted(generated=...)")
    for name in adapted.generated:
        assert name in dict(adapted.model.module.named_parameters()), f"generated names no weight: {name}"

    # Logits are a finite (N, C) tensor, checked first: a broadcast row would garble the comparisons below.
    images = task.test.value.load(torch.arange(8))
    with torch.inference_mode():
        for t in (task, probe):
            for rows in (8, 1):  # one image too: logits of shape (1, C) must not come from broadcasting
                logits = adapted.logits(images[:rows], t)
                assert isinstance(logits, torch.Tensor), f"logits for {t.name} are a {type(logits).__name__}"
                assert logits.shape == (rows, t.num_classes), \
                    f"logits for {rows} images of {t.name} have shape {tuple(logits.shape)}, not (N, C)"
                assert torch.isfinite(logits).all(), f"non-finite logits (NaN or Inf) on {t.name}"

    # One scoring path: cached and uncached scoring give the same accuracies, on the task and on a probe.
    with tempfile.TemporaryDirectory() as tmp:
        cached = Evaluator(batch_size=64, cache=EmbeddingCache(tmp))
        cached.bind(pretrained)
        uncached = Evaluator(batch_size=64)
        for t in (task, probe):
            images = t.test.value.subset(torch.arange(96))
            a, b = cached.accuracy(adapted, images, t, t.name), uncached.accuracy(adapted, images, t, t.name)
            assert a == b, f"{method.name} scores {a} on {t.name} from cached embeddings but {b} from images"

    assert (task_state(task), task_state(probe)) == as_given, "scoring changed the task it was given"
    assert pretrained.fingerprint() == before, "scoring changed a model it was not given"
    return adapted


def task_state(task) -> tuple:
    """What a method must leave as it found it in a task: its names, order, templates, shifts and probes."""
    return (task.name, list(task.classnames), list(task.templates), list(task.shifts), list(task.probes),
            task.train_template, task.class_split)


@pytest.fixture
def clipbench_contract():
    """The contract check as a fixture: ``clipbench_contract(method, **kwargs)``."""
    return check_method_contract
