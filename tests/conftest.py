"""Shared fixtures. Unit tests need no Ray; integration tests share one local Ray (num_cpus=2)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session, 2 CPUs like CI; shut down at the end."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    """An empty cache root, so tests never touch the user's ~/.cache/c2s."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("C2S_CACHE", str(root))
    return root
