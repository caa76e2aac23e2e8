"""The cache root and atomic writes: every cache (toy CLIP, text embeddings, token caches) lives here."""

from __future__ import annotations

import contextlib
import os
import shutil
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

    A crash mid-write leaves no half-written file under the final name. Works for files and for folders
    (create the folder at the yielded path and fill it). A folder replaces an existing folder of the same
    name: the old one is renamed aside, the new one renamed in, then the old one removed (``os.replace``
    alone cannot rename onto a non-empty folder); readers see the old or the new folder, each complete.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    old: Path | None = None
    try:
        yield tmp
        if tmp.is_dir() and final.is_dir() and not final.is_symlink():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        for leftover in (tmp, old):
            if leftover is None:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists() or leftover.is_symlink():
                leftover.unlink()
