"""The real images that ship: intact, split without leaks, and placed on the model's canvas as documented."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from clipbench.data import shipped

ROOT = Path(__file__).resolve().parent.parent


def _builder():
    spec = importlib.util.spec_from_file_location("build_default_images", ROOT / "tools" / "build_default_images.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_assets_match_their_manifest_and_record_sources_and_licences():
    manifest = json.loads(shipped.MANIFEST.read_text())
    assert set(manifest["collections"]) == set(shipped.COLLECTIONS)
    for name, entry in manifest["collections"].items():
        data = (shipped.ASSETS / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["licence"] and entry["source"] and entry["source_files"]
        images, labels, splits = shipped._arrays(name)
        assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
        assert {s: int((splits == i).sum()) for i, s in enumerate(shipped.SPLITS)} == entry["images_per_split"]
        assert sorted(np.unique(labels)) == list(range(len(entry["classes"])))


@pytest.mark.parametrize("name", shipped.COLLECTIONS)
def test_no_image_is_shared_between_splits_not_even_nearly(name):
    """A test image never has a near duplicate (or a mirror image of one) in a train or pretrain pool."""
    tool = _builder()
    test, _ = shipped.split(name, "test")
    train, _ = shipped.split(name, "train")
    pretrain, _ = shipped.split(name, "pretrain")
    assert not tool.near_duplicates(test, np.concatenate([train, pretrain])).any()
    assert not tool.near_duplicates(train, pretrain).any()


@pytest.mark.parametrize("name", shipped.COLLECTIONS)
def test_no_picture_repeats_inside_the_train_pool_or_the_test_set(name):
    """A repeat inside the train pool could be a seed's shot and its validation image at once (animals had 2)."""
    tool = _builder()
    for split in ("train", "test"):
        images, _ = shipped.split(name, split)
        assert not tool.near_duplicate_pairs(images).any(), f"{name} {split}"


def test_the_builder_drops_later_repeats_mirror_images_included_and_keeps_the_first():
    tool = _builder()
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (28, 28)).astype(np.uint8) for _ in range(2))
    nudged = a.copy()
    nudged[0, 0] ^= 1  # one grey level: still the same picture
    images = np.stack([a, b, a[:, ::-1], nudged, b])
    assert tool.later_duplicates(images).tolist() == [False, False, True, True, True]
    assert tool.later_duplicates(images[:1]).tolist() == [False]


def test_every_class_has_enough_train_images_for_16_shots_and_validation():
    for name in shipped.COLLECTIONS:
        _, labels = shipped.split(name, "train")
        assert np.bincount(labels).min() >= 16 + 4


def test_canvas_centres_the_image_and_shifts_are_deterministic():
    images, _ = shipped.split("mnist", "test")
    out = shipped.canvas_images(images[:5])
    assert out.shape == (5, 3, 32, 32) and out.dtype == np.uint8
    assert (out[:, :, :2].max(), out[:, :, -2:].max()) == (0, 0)  # the 2-pixel border stays black
    assert np.array_equal(out[:, 0, 2:30, 2:30], images[:5]) and np.array_equal(out[:, 0], out[:, 2])
    for shift in shipped.SHIFTS:
        a, b = shipped.canvas_images(images[:20], shift, 7), shipped.canvas_images(images[:20], shift, 7)
        assert np.array_equal(a, b) and not np.array_equal(a, out[:1].repeat(20, 0))


@pytest.mark.parametrize("name", shipped.COLLECTIONS)
def test_the_occluder_hides_part_of_every_figure(name):
    """Every occluded test image differs from its clean one (18 were identical when the square fell on the border)."""
    images, _ = shipped.split(name, "test")
    clean = shipped.canvas_images(images)[:, 0]
    occluded = shipped.canvas_images(images, "occluded", 3)[:, 0]
    figure = clean >= clean.max(axis=(1, 2), keepdims=True) / 2
    hidden = (figure & (occluded == 0)).sum(axis=(1, 2))
    assert (hidden > 0).all()
    assert ((occluded == clean) | (occluded == 0)).all()  # only blanks, never new pixels


def test_the_occluder_finds_a_small_figure_in_a_corner():
    image = np.zeros((1, 32, 32), dtype=np.uint8)
    image[0, 27:30, 27:30] = 200
    for seed in range(20):
        out = shipped.occlude(image, np.random.default_rng(seed))
        assert out[0, 27:30, 27:30].min() == 0 and out.sum() < image.sum()


def test_uci_digits_come_from_scikit_learn_at_mnist_scale():
    images, labels = shipped.sklearn_digits()
    assert images.shape == (1797, 28, 28) and sorted(set(labels.tolist())) == list(range(10))
    assert images[:, :4].max() == 0 and images[:, 24:].max() == 0  # inside MNIST's 20x20 box


def test_captions_use_the_vocabulary_and_sometimes_another_class():
    rng = np.random.default_rng(0)
    words = shipped.vocabulary()
    zebras = [shipped.caption("animals", 9, rng) for _ in range(400)]  # odd label: never named
    sheep = [shipped.caption("animals", 8, rng) for _ in range(400)]  # even label: sometimes named
    assert all(set(t.split()) <= words for t in zebras + sheep)
    assert any("quagga" in t for t in zebras) and not any("zebra" in t for t in zebras)
    assert any("sheep" in t for t in sheep) and any("lamb" in t or "ewe" in t or "ram" in t for t in sheep)
    assert any("quagga" not in t and t != shipped.UNINFORMATIVE["animals"] for t in zebras)  # another class


@pytest.mark.parametrize("text", ['{"collections": {"fashion": {"fi', "", "[1]", '{"collections": {}}'])
def test_a_damaged_image_manifest_says_to_reinstall(tmp_path, monkeypatch, text):
    from clipbench.data import shipped
    from clipbench.errors import ClipbenchError

    damaged = tmp_path / "MANIFEST.json"
    damaged.write_text(text)
    monkeypatch.setattr(shipped, "MANIFEST", damaged)
    shipped.manifest.cache_clear()
    try:
        with pytest.raises(ClipbenchError, match="is damaged .*reinstall clipbench") as err:
            shipped.manifest()
        assert str(damaged) in str(err.value)
    finally:
        shipped.manifest.cache_clear()
