"""The suite writes caches under its own temporary folder, never the user's ~/.cache/c2s (tests/conftest.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from conftest import SESSION_CACHE

from c2s.paths import cache_root


def test_the_session_resolves_its_own_cache_root():
    resolved = cache_root({})  # what every entrypoint resolves when the config leaves cache_root unset
    assert resolved == SESSION_CACHE == Path(os.environ["C2S_CACHE"])
    assert resolved.is_relative_to(Path(tempfile.gettempdir()))
    assert not resolved.is_relative_to(Path.home() / ".cache")


def test_the_cache_root_fixture_is_empty_and_private(cache_root):
    assert cache_root.is_dir() and not any(cache_root.iterdir())
    assert Path(os.environ["C2S_CACHE"]) == cache_root != SESSION_CACHE
