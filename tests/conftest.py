"""Shared fixtures: the fakes of tests/fakes.py as plugins, the embedded model, a private cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

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
    return load_embedded()


@pytest.fixture(scope="session")
def default_suite():
    from clipbench.suites.default import build_default_suite

    return build_default_suite()


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's embedding cache."""
    os.environ["CLIPBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
