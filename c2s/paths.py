"""The cache root and atomic writes: every cache (toy CLIP, text embeddings, token caches) lives here."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def cache_root(cfg: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``cfg.cache_root`` if set, else ``$C2S_CACHE``, else ``~/.cache/c2s``; created if missing.

    Only entrypoints call this with ``env=os.environ``; library code receives the resolved path.
    """
    env = os.environ if env is None else env
    configured = cfg.get("cache_root") if cfg is not None else None
    root = Path(configured or env.get("C2S_CACHE") or Path.home() / ".cache" / "c2s").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash mid-write leaves no half-written file under the final name (works for files and folders).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
