"""Checkpoint contents (pure torch): everything a resumed run needs to continue at the same step.

Also the driver's check of a checkpoint before it is used (:func:`checkpoint_damage`) and the choice of the
newest intact one under a run directory (:func:`newest_intact_checkpoint`), for ``c2s eval`` and
``c2s train --resume`` (which rewrites Ray Train's snapshot with it: c2s.train.snapshot.resume_from_intact).
"""

from __future__ import annotations

import random
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"
# What a resumed run (c2s.train.loop) and ``c2s eval`` read from a state.pt; save_state writes them all.
REQUIRED_KEYS = ("student", "objective", "optimizer", "scheduler", "step", "rng", "config")
_ZIP_LOCAL_HEADER = b"PK\x03\x04"  # torch.save writes a zip archive; every archive starts with a member


def rng_state() -> dict[str, Any]:
    # Stored as tensors and plain Python values so the checkpoint loads with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(directory: str | Path, *, student: torch.nn.Module, objective: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, step: int, config: dict,
               seen_text: torch.Tensor) -> Path:
    """Write ``state.pt`` into ``directory``: student, objective (latent generator + bank), optimizer,
    scheduler, step, RNG states, the resolved config and the seen text embeddings used in training."""
    path = Path(directory) / STATE_FILE
    torch.save({
        "student": student.state_dict(),
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "rng": rng_state(),
        "config": config,
        "seen_text": seen_text.detach().cpu(),
    }, path)
    return path


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``state.pt`` written by :func:`save_state` (``weights_only=True``: tensors and plain values)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} not found (expected a c2s checkpoint directory)")
    return torch.load(path, map_location=map_location, weights_only=True)


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest ``checkpoint_*`` directory (holding ``state.pt``) that Ray Train wrote under a run, intact or
    not (:func:`newest_intact_checkpoint` checks); :class:`NoCheckpointError` when there is none."""
    return checkpoints_newest_first(run_dir)[0]


class CheckpointError(ValueError):
    """No usable checkpoint where one was asked for; the message names every file and what is wrong with it.

    A user error for the ``c2s`` command (c2s.cli.USER_ERRORS): one line, exit status 2."""


class NoCheckpointError(CheckpointError, FileNotFoundError):
    """The path is not a run (no ``checkpoint_*/state.pt``) or does not exist."""


@dataclass(frozen=True)
class CheckpointDamage:
    """Why a ``state.pt`` cannot be used. ``kind``: ``missing``, ``empty``, ``truncated`` (a zip archive cut
    short: no central directory), ``not-zip`` (not what torch.save writes), ``crc`` (a member's bytes differ
    from the CRC-32 written with them), ``unreadable`` (a member zipfile cannot read, or a zip that a weights-only
    torch.load cannot read or refuses to unpickle) or ``missing-keys``. ``str()`` is the reason printed."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass
class IntactCheckpoint:
    """The checkpoint chosen by :func:`newest_intact_checkpoint`: its directory, its step, and the newer
    ``(state.pt path, damage)`` pairs skipped on the way, newest first."""

    path: Path
    step: int
    skipped: list[tuple[Path, CheckpointDamage]] = field(default_factory=list)


def _state_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint if checkpoint.name == STATE_FILE or checkpoint.is_file() else checkpoint / STATE_FILE


# What reading a damaged zip archive raises (zipfile; zlib for a deflated member whose bytes changed, which
# torch.load reads though torch.save stores members uncompressed; the OS for an unreadable file).
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, OSError, zlib.error)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # torch's weights-only message sets its advice in bold
_WEIGHTS_ONLY_FAILED = "Weights only load failed"  # how torch's weights-only refusals begin


def _member_failures(archive: zipfile.ZipFile) -> Iterator[tuple[str, str]]:
    """``(member, error)`` of each member that cannot be read back whole, its CRC-32 included (zipfile checks
    it at each member's end: ``Bad CRC-32 for file ...``).

    A member written with CRC 0 is not checked: ``torch.serialization.set_crc32_options(False)`` saves
    without CRCs (torch.load does not check them then either)."""
    for info in archive.infolist():
        if info.CRC == 0 and info.file_size:
            continue
        try:
            with archive.open(info) as member:
                while member.read(1 << 22):
                    pass
        except _ZIP_ERRORS as err:
            yield info.filename, str(err) or type(err).__name__


def _zip_damage(path: Path, size: int) -> CheckpointDamage | None:
    """The archive-level checks: a zip archive (else truncated / not-zip), every member readable with its
    CRC-32 (else crc / unreadable)."""
    head = b""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as err:
        if not isinstance(err, zipfile.BadZipFile):
            return CheckpointDamage("unreadable", f"cannot be read: {err}")
        if head == _ZIP_LOCAL_HEADER:
            return CheckpointDamage("truncated", f"truncated: {size} bytes, a zip archive cut short before its "
                                    "central directory")
        return CheckpointDamage("not-zip", f"not a zip archive as torch.save writes: {size} bytes starting "
                                f"with {head!r}")
    with archive:
        names = archive.namelist()
        if not any(name.endswith("/data.pkl") for name in names):  # torch.save: <stem>/data.pkl, <stem>/data/N
            shown = ", ".join(repr(name) for name in names[:3]) + (" ..." if len(names) > 3 else "")
            return CheckpointDamage("unreadable", f"a zip archive but not one torch.save writes: no data.pkl "
                                    f"member ({len(names)} member(s): {shown or 'none'})")
        bad = list(_member_failures(archive))
    if not bad:
        return None
    crc = [name for name, error in bad if "CRC" in error]
    if crc:
        shown = ", ".join(repr(name) for name in crc[:3]) + (f" and {len(crc) - 3} more" if len(crc) > 3 else "")
        return CheckpointDamage("crc", f"CRC-32 mismatch in {shown}: bytes changed after they were written")
    name, error = bad[0]
    return CheckpointDamage("unreadable", f"zip member {name!r} cannot be read: {error}")


def inspect_checkpoint(checkpoint: str | Path) -> tuple[CheckpointDamage | None, int | None]:
    """``(damage, step)`` of a checkpoint directory (or its ``state.pt``): ``(None, step)`` when intact.

    Two reads, both on the driver: every zip member read back against its CRC-32 (the whole file at disk
    speed, 0.15 s for 400 MB from the page cache: a truncated, cut or overwritten file fails here), then
    ``torch.load(..., weights_only=True, mmap=True)``, which unpickles the small ``data.pkl`` and maps the
    tensors without reading them (6 ms for those 400 MB; a full load took 0.45 s), to check the keys a
    resumed run and ``c2s eval`` read (:data:`REQUIRED_KEYS`) and that ``step`` is a whole number.
    """
    path = _state_path(checkpoint)
    if not path.is_file():
        return CheckpointDamage("missing", "no such file"), None
    size = path.stat().st_size
    if size == 0:
        return CheckpointDamage("empty", "empty file: 0 bytes"), None
    damage = _zip_damage(path, size)
    if damage is not None:
        return damage, None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch.load's errors have no common base (RuntimeError, UnpicklingError, ...)
        return CheckpointDamage("unreadable", _load_failure(err)), None
    if not isinstance(state, dict):
        return CheckpointDamage("missing-keys", f"holds a {type(state).__name__}, not a c2s checkpoint's dict"), None
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        return CheckpointDamage("missing-keys", "missing key(s) " + ", ".join(repr(k) for k in missing)
                                + ": not a checkpoint written by c2s's training loop"), None
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return CheckpointDamage("missing-keys", f"'step' is {step!r}, not a whole number"), None
    return None, step


def _load_failure(err: Exception) -> str:
    """The reason printed for a failed ``torch.load(weights_only=True)``: its first line; or, when the
    weights-only unpickler refused the pickle (an object it does not build, a byte that is no pickle opcode),
    the unpickler's own first sentence, which names what it refused. torch wraps that error in advice to load
    with ``weights_only=False`` (never done here: c2s does not unpickle what a file asks for) and raises the
    wrapper inside the except block that caught it, so the unpickler's error is its ``__context__``
    (torch/serialization.py, ``_get_wo_message`` and its callers)."""
    text = _ANSI_ESCAPE.sub("", str(err)).strip()
    refused = err.__context__
    if text.startswith(_WEIGHTS_ONLY_FAILED) and refused is not None and str(refused).strip():
        reason = str(refused).strip().splitlines()[0].split(". ")[0]
        return f"a weights-only torch.load refuses its data.pkl: {reason} (c2s unpickles tensors and plain values only)"
    first = text.splitlines()[0] if text else type(err).__name__
    first = first.split("  (Could this error message be improved?")[0].strip()  # torch's C++ checks append it
    return f"a zip archive torch.load cannot read: {first}"


def checkpoint_damage(checkpoint: str | Path) -> CheckpointDamage | None:
    """Why the checkpoint directory's ``state.pt`` (or that file itself) is damaged; None when intact
    (:func:`inspect_checkpoint`)."""
    return inspect_checkpoint(checkpoint)[0]


def checkpoints_newest_first(run_dir: str | Path) -> list[Path]:
    """The ``checkpoint_*`` directories holding ``state.pt`` under a run, newest first (by modification
    time, then name). :class:`NoCheckpointError` when the folder is missing or holds none."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise NoCheckpointError(f"{run_dir} does not exist (expected a c2s run directory or checkpoint directory)")
    found = [p.parent for p in run_dir.glob("checkpoint_*/" + STATE_FILE)]
    if not found:
        raise NoCheckpointError(f"no checkpoint_*/{STATE_FILE} under {run_dir} (not a c2s run directory, "
                                "or no checkpoint was reported yet)")
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def damage_summary(skipped: list[tuple[Path, CheckpointDamage]]) -> str:
    return "; ".join(f"{path} ({damage})" for path, damage in skipped)


def newest_intact_checkpoint(run_dir: str | Path) -> IntactCheckpoint:
    """The newest ``checkpoint_*`` under ``run_dir`` whose ``state.pt`` is intact, with the damaged ones
    skipped. :class:`CheckpointError` naming every file and its damage when none is intact."""
    skipped: list[tuple[Path, CheckpointDamage]] = []
    for directory in checkpoints_newest_first(run_dir):
        damage, step = inspect_checkpoint(directory)
        if damage is None:
            return IntactCheckpoint(directory, int(step), skipped)
        skipped.append((directory / STATE_FILE, damage))
    raise CheckpointError(f"no intact checkpoint under {run_dir}: every {STATE_FILE} is damaged: "
                          f"{damage_summary(skipped)}")
