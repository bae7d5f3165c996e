import pytest
import torch

from clipbench.errors import ClipbenchError
from clipbench.tasks import TensorImageSet, sample_fewshot


def pool(per_class=(10, 10, 10)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    return TensorImageSet(images, labels)


def test_k_per_class_and_validation_min_k_4():
    fs = sample_fewshot(pool(), 3, shots=5, seed=1)
    assert torch.bincount(fs.labels).tolist() == [5, 5, 5]
    assert torch.bincount(fs.val_labels).tolist() == [4, 4, 4]
    fs2 = sample_fewshot(pool(), 3, shots=2, seed=1)
    assert torch.bincount(fs2.val_labels).tolist() == [2, 2, 2]


def test_support_and_validation_are_disjoint_and_seeded():
    fs = sample_fewshot(pool(), 3, shots=4, seed=3)
    support_ids = set(fs.images[:, 0, 0, 0].tolist())
    val_ids = set(fs.val_images[:, 0, 0, 0].tolist())
    assert not support_ids & val_ids
    again = sample_fewshot(pool(), 3, shots=4, seed=3)
    other = sample_fewshot(pool(), 3, shots=4, seed=4)
    assert torch.equal(fs.indices, again.indices)
    assert not torch.equal(fs.indices, other.indices)


def test_labels_match_images():
    p = pool()
    fs = sample_fewshot(p, 3, shots=3, seed=1)
    assert torch.equal(p.labels[fs.images[:, 0, 0, 0].long()], fs.labels)


def test_too_many_shots_is_one_clear_error():
    with pytest.raises(ClipbenchError, match=r"only 7 training images.*Use --shots 3 or fewer"):
        sample_fewshot(pool((10, 7, 10)), 3, shots=8, seed=1, task_name="t")
    with pytest.raises(ClipbenchError, match="at least 1"):
        sample_fewshot(pool(), 3, shots=0, seed=1)


def test_base_new_split_is_cocoop(default_suite):
    task = default_suite.task("colour")  # 8 classes -> 4 base, 4 new
    base, new = task.base_new_split()
    assert base == [0, 1, 2, 3] and new == [4, 5, 6, 7]
    shape = default_suite.task("shape")
    assert shape.base_new_split() == ([0, 1, 2], [3, 4, 5])


def test_the_balanced_split_gives_each_half_as_many_even_labels_as_odd(default_suite):
    import dataclasses

    for n, base in ((10, [0, 3, 4, 7, 8]), (8, [0, 3, 4, 7]), (6, [0, 3, 4])):
        task = dataclasses.replace(default_suite.task("shape"), classnames=[str(i) for i in range(n)],
                                   split_rule="balanced")
        got_base, got_new = task.base_new_split()
        assert got_base == base and sorted(got_base + got_new) == list(range(n))
        assert len(got_base) == -(-n // 2)  # ceil(n / 2) base classes, as CoCoOp's split
        for half in (got_base, got_new):
            odd = sum(c % 2 for c in half)
            assert abs(odd - (len(half) - odd)) <= 1, half
    with pytest.raises(ValueError, match="unknown split rule"):
        dataclasses.replace(default_suite.task("shape"), split_rule="random").base_new_split()


def test_restrict_relabels_and_filters():
    from tests.fakes import mini_suite

    task = mini_suite().task("shape")
    sub = task.restrict([3, 4, 5], "new")
    test = sub.test.value
    assert sub.classnames == task.classnames[3:]
    assert set(test.labels.tolist()) == {0, 1, 2}
    assert len(test) == 3 * 6


def test_with_probes_cuts_every_tasks_probes_and_leaves_the_suite_alone():
    from tests.fakes import mini_suite

    suite = mini_suite()
    cut = suite.with_probes([])
    assert cut.task("shape").probes == [] and suite.task("shape").probes == ["size"]
    import pytest

    from clipbench.errors import ClipbenchError

    with pytest.raises(ClipbenchError, match="no probe of suite"):
        suite.with_probes(["shape"])


def test_bind_points_a_data_suite_at_its_root_in_one_call(tmp_path):
    from clipbench.plugins import collect, get_plugin_manager

    suite = collect(get_plugin_manager(load_entrypoints=False)).suite("forgetting")
    assert suite.bind(tmp_path, download=False, image_size=64) is suite
    assert (suite.data.path, suite.data.image_size) == (tmp_path, 64)


def test_a_task_edited_in_place_never_reaches_the_next_suite_built():
    """Suites build tasks from module-level tables: editing one built task must leave the tables alone
    (a careless-method test that cleared the shape task's probes once emptied them for every later run)."""
    from clipbench.suites.default import build_default_suite

    shape = build_default_suite().task("shape")
    shape.probes.clear()
    shape.templates.clear()
    shape.classnames.sort(reverse=True)
    again = build_default_suite().task("shape")
    assert again.probes and again.templates and again.classnames != shape.classnames
