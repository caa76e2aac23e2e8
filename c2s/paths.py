"""The cache root and atomic writes: every cache (toy CLIP, text embeddings, token caches) lives here."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
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
    removed = remove_stale_temps(final)
    if removed:
        print(f"[c2s] removed {len(removed)} temporary cop{'y' if len(removed) == 1 else 'ies'} of {final} that a "
              f"process killed while writing it left behind: {', '.join(p.name for p in removed)}",
              file=sys.stderr, flush=True)
    # the writer's host and pid in the name: a later writer of the same path can tell a dead one's leftovers
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{_owner_tag()}.", suffix=".tmp", dir=final.parent)
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


def _host() -> str:
    """This machine's name as it goes into a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _owner_tag() -> str:
    """``<host>-<pid>`` of this process, as atomic_path writes it into its temporary names."""
    return f"{_host()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """The temporary siblings ``.<name>.<host>-<pid>.<random>.tmp[.old]`` of ``path`` that atomic_path left when
    its process died without unwinding (SIGKILL, out of memory, a lost node): written on this host by a pid that
    no longer runs. Another host's, a running process's and names of another form are never listed (a reused
    pid reads as running: kept, never wrongly removed)."""
    final = Path(path)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.{re.escape(_host())}-(\d+)\.[^.]+\.tmp(\.old)?")
    if not final.parent.is_dir():
        return []
    found = []
    for sibling in sorted(final.parent.iterdir()):
        match = pattern.fullmatch(sibling.name)
        if match and not _pid_alive(int(match.group(1))):
            found.append(sibling)
    return found


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temps` of ``path``; returns what was removed."""
    removed = []
    for stale in stale_temps(path):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        if not stale.exists():
            removed.append(stale)
    return removed
