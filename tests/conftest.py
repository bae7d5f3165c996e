"""Shared fixtures: the fakes of tests/fakes.py as plugins, the embedded model, a private cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: the cores are shared between the N workers
    import torch

    from clipbench.sweep import available_cores

    torch.set_num_threads(max(1, available_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

from clipbench.models import load_embedded
from tests.fakes import CountingMethod, FakePlugin


@pytest.fixture
def fake_plugin():
    CountingMethod.calls = []
    return FakePlugin()


@pytest.fixture
def registry(fake_plugin):
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager(extra=[fake_plugin])
    return pm, collect(pm)


@pytest.fixture(scope="session")
def embedded():
    """The embedded model, shared by the session: tests adapt and change clones of it, never it."""
    model = load_embedded()
    before = model.fingerprint()
    yield model
    assert model.fingerprint() == before, "a test changed the session's embedded model; change a clone()"


@pytest.fixture(scope="session")
def default_suite():
    from clipbench.suites.default import build_default_suite

    return build_default_suite()


@pytest.fixture(scope="session")
def cached_evaluator(embedded, tmp_path_factory):
    """One evaluator for the whole session, bound to the embedded model: each default-suite set is encoded once
    (pretrained embeddings cached in a folder of its own, not $CLIPBENCH_CACHE_DIR, which tests of the cache's
    cold and warm behaviour own) and each zero-shot reference is computed once.  Both are functions of the set
    alone, so no test's result depends on which test filled them.  Score with it; do not bind or reconfigure it."""
    from clipbench import protocol
    from clipbench.cache import EmbeddingCache

    evaluator = protocol.Evaluator(cache=EmbeddingCache(tmp_path_factory.mktemp("evaluator-cache")))
    evaluator.bind(embedded)
    return evaluator


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's embedding cache."""
    os.environ["CLIPBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
