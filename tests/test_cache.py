"""The embedding cache serves an entry only to its own key, and a cache that fails never stops a run."""

from __future__ import annotations

import errno
import os
import time
import warnings

import pytest
import torch

from clipbench import cache as cache_module
from clipbench.cache import EmbeddingCache


def entry(c, data_fp, value, rows=None, key="features-fp32", model="m" * 16):
    return c.get_or_compute(model, data_fp, key, lambda: value, rows=rows)


def test_hit_after_miss(tmp_path):
    c = EmbeddingCache(tmp_path)
    a = torch.randn(4, 3)
    assert torch.equal(entry(c, "d1", a), a) and c.misses == 1
    assert torch.equal(entry(c, "d1", torch.zeros(4, 3)), a) and c.hits == 1


def test_swapped_entries_are_misses_not_wrong_embeddings(tmp_path):
    c = EmbeddingCache(tmp_path)
    a, b = torch.full((4, 3), 1.0), torch.full((4, 3), 2.0)
    entry(c, "d1", a)
    entry(c, "d2", b)
    p1, p2 = c.path("m" * 16, "d1", "features-fp32"), c.path("m" * 16, "d2", "features-fp32")
    raw1, raw2 = p1.read_bytes(), p2.read_bytes()
    p1.write_bytes(raw2)
    p2.write_bytes(raw1)
    fresh = EmbeddingCache(tmp_path)
    with pytest.warns(UserWarning, match="belongs to another key"):
        got = entry(fresh, "d1", a)
    assert torch.equal(got, a) and fresh.misses == 1  # recomputed, never the swapped-in embeddings of d2


def test_an_entry_of_the_wrong_shape_is_a_miss(tmp_path):
    c = EmbeddingCache(tmp_path)
    entry(c, "d1", torch.zeros(5, 3), rows=5)
    with pytest.warns(UserWarning, match="wrong shape"):
        got = entry(EmbeddingCache(tmp_path), "d1", torch.ones(6, 3), rows=6)
    assert got.shape == (6, 3)


def test_a_corrupt_entry_is_recomputed(tmp_path):
    c = EmbeddingCache(tmp_path)
    entry(c, "d1", torch.zeros(2, 2))
    path = c.path("m" * 16, "d1", "features-fp32")
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.warns(UserWarning, match="corrupt"):
        assert torch.equal(entry(EmbeddingCache(tmp_path), "d1", torch.ones(2, 2)), torch.ones(2, 2))


def test_a_failing_write_warns_once_leaves_nothing_and_carries_on(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", full)
    c = EmbeddingCache(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            assert torch.equal(entry(c, f"d{i}", torch.full((2, 2), float(i))), torch.full((2, 2), float(i)))
    assert len([w for w in caught if "could not write the embedding cache" in str(w.message)]) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # no partial file left to eat the remaining space


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path):
    c = EmbeddingCache(tmp_path)
    folder = tmp_path / ("m" * 16)
    folder.mkdir()
    stale, fresh = folder / "x.pt.abc.tmp", folder / "y.pt.def.tmp"
    stale.write_bytes(b"0" * 100)
    fresh.write_bytes(b"0" * 100)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    entry(c, "d1", torch.zeros(1, 1))
    assert not stale.exists() and fresh.exists()  # fresh may belong to a concurrent run


def test_entries_get_the_umask_mode(tmp_path):
    previous = os.umask(0o002)
    try:
        c = EmbeddingCache(tmp_path)
        entry(c, "d1", torch.zeros(1, 1))
        mode = c.path("m" * 16, "d1", "features-fp32").stat().st_mode & 0o777
    finally:
        os.umask(previous)
    assert mode == 0o664  # group-readable, as open() would make it; mkstemp alone gives 0600


def _hammer(root: str, rounds: int) -> int:
    """Read-or-write the same ten entries many times; return how many values came back wrong."""
    c = EmbeddingCache(root)
    wrong = 0
    for r in range(rounds):
        for i in range(10):
            value = torch.full((50, 8), float(i))
            got = c.get_or_compute("m" * 16, f"d{i}", "features-fp32", lambda: value, rows=50)
            wrong += int(not torch.equal(got, value))
        if r % 5 == 0:  # entries vanish and come back while the other process reads them
            for p in (tmp for tmp in c.root.rglob("*.pt")):
                p.unlink(missing_ok=True)
    return wrong


def test_two_processes_share_one_cache_safely(tmp_path):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        wrong = pool.starmap(_hammer, [(str(tmp_path), 30), (str(tmp_path), 30)])
    assert wrong == [0, 0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_rendered_world_sets_are_read_back_byte_for_byte(tmp_path, monkeypatch):
    """A world set is rendered once per cache folder; the next process reads the same bytes, and a damaged
    entry is rendered again rather than served."""
    from clipbench.data import world
    from clipbench.suites.default import WorldImageSet

    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(tmp_path))
    spec = world.with_style(world.ID_SPEC, corruption="blur")
    fresh = torch.from_numpy(world.labelled_set(7, "shape", 4, spec).images)
    first = WorldImageSet("shape", 4, spec, 7)
    assert torch.equal(first.images, fresh)
    [entry] = (tmp_path / "rendered").glob(f"{first.fingerprint}-*.pt")
    calls = []
    monkeypatch.setattr(world, "labelled_set", lambda *a: calls.append(a))  # a second render would fail
    assert torch.equal(WorldImageSet("shape", 4, spec, 7).images, fresh) and not calls
    entry.write_bytes(entry.read_bytes()[:-9] + b"damaged!!")
    monkeypatch.undo()
    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(WorldImageSet("shape", 4, spec, 7).images, fresh)
