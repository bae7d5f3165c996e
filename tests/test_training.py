"""The shared training loops: batches, full-batch steps, choosing on validation, and per-epoch losses."""

import torch

from clipbench import training
from clipbench.method import AdaptContext
from clipbench.tasks import sample_fewshot


def test_minibatches_cover_every_example_once_per_epoch_in_a_seeded_order():
    a = list(training.minibatches(10, 4, 3, torch.Generator().manual_seed(1)))
    b = list(training.minibatches(10, 4, 3, torch.Generator().manual_seed(1)))
    assert [len(x) for x in a] == [4, 4, 2] * 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    for epoch in range(3):
        assert sorted(torch.cat(a[3 * epoch:3 * epoch + 3]).tolist()) == list(range(10))
    assert training.steps_per_epoch(10, 4) == 3 and training.steps_per_epoch(3, 32) == 1


def test_full_batch_minimises_and_best_on_validation_keeps_the_first_of_ties():
    w = torch.zeros(1, requires_grad=True)
    training.full_batch(torch.optim.SGD([w], lr=0.1), lambda: (w - 3).pow(2).sum(), 200)
    assert abs(float(w.detach()) - 3) < 1e-3
    seen = []
    best, fitted = training.best_on_validation([1, 2, 3, 4], lambda c: (((c % 2),), c * 10),
                                               lambda done, total: seen.append((done, total)))
    assert (best, fitted) == (1, 10) and seen[-1] == (4, 4)


def test_finetune_reports_the_mean_loss_of_every_epoch(embedded, default_suite):
    task = default_suite.task("shape")
    fewshot = sample_fewshot(task.train.value, task.num_classes, 2, 1)
    epochs = []
    ctx = AdaptContext(torch.device("cpu"), 1, epoch_finished=lambda e, n, loss: epochs.append((e, n, loss)))
    model = embedded.clone()
    params = [model.module.logit_scale]
    model.module.requires_grad_(False)
    params[0].requires_grad_(True)
    losses = training.finetune(model, params, fewshot, task, training.Schedule(lr=1e-3, batch_size=5, epochs=2),
                               ctx)
    per_epoch = training.steps_per_epoch(len(fewshot.labels), 5)
    assert [(e, n) for e, n, _ in epochs] == [(1, 2), (2, 2)]
    assert abs(epochs[0][2] - sum(losses[:per_epoch]) / per_epoch) < 1e-9


def _rates(schedule, total):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.lr)
    sched = training.warmup_cosine(opt, total, schedule.warmup_fraction, schedule.decay)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_the_sgd_recipe_of_aclip_and_bitfit_keeps_its_learning_rate_constant():
    """mit-ll/IIMM trains A-CLIP (and its BitFit comparison) at a constant rate: no warm-up, no decay."""
    from clipbench.methods.aclip import AClipConfig
    from clipbench.methods.bitfit import BitFitConfig

    for config in (AClipConfig(lr=1e-3), BitFitConfig()):
        schedule = config.schedule()
        assert schedule.optimizer == "sgd" and schedule.decay == "constant"
        assert _rates(schedule, 30) == [config.lr] * 30


def test_the_adamw_recipe_warms_up_then_decays_to_zero():
    from clipbench.config import AdamWRecipe

    rates = _rates(AdamWRecipe(lr=1.0).schedule(), 100)
    assert rates[0] < rates[9] and max(rates) == rates[9] and rates[-1] < 0.01


def test_an_unknown_decay_from_a_caller_is_a_bug_not_a_user_sentence():
    """Users' values are refused by the option's choices before any work (tests/test_config.py); a
    direct caller passing a wrong shape gets a plain ValueError."""
    import pytest

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown learning-rate decay 'linear'"):
        training.warmup_cosine(opt, 10, 0.0, "linear")
