"""A damaged checkpoint loses nothing that is intact (issue 27 item 6).

The check of one ``state.pt`` (c2s.train.checkpoint.inspect_checkpoint) on copies of a real toy checkpoint
damaged each way a user met or may meet; the newest intact checkpoint of a run; Ray Train's snapshot rewritten
by ``--resume`` (c2s.train.snapshot.resume_from_intact) and read back by Ray's own CheckpointManager; ``c2s eval``
and ``c2s train --resume`` on the console. The resumed training run on a truncated checkpoint is in
tests/integration/test_train_job.py (it shares that file's Train runs).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from toy_run import make_toy_run

from c2s.cli import is_user_error
from c2s.cli import main as cli_main
from c2s.config import dump_config, load_config
from c2s.train.checkpoint import (
    STATE_FILE,
    CheckpointError,
    NoCheckpointError,
    checkpoint_damage,
    inspect_checkpoint,
    latest_checkpoint,
    newest_intact_checkpoint,
)
from c2s.train.snapshot import (
    RAY_CHECKPOINT_SNAPSHOT,
    SNAPSHOT_BACKUP_SUFFIX,
    restored_step,
    resume_from_intact,
)


@pytest.fixture(scope="module")
def toy_state(tmp_path_factory) -> Path:
    """A real c2s ``state.pt`` (toy_tiny student, save_state), step 1."""
    return make_toy_run(tmp_path_factory.mktemp("toy27") / "run") / "checkpoint_000001" / STATE_FILE


def _checkpoint(run: Path, name: str, source: Path, step: int, mtime: float) -> Path:
    """``run/name/state.pt``: ``source`` re-saved with ``step``; the directory's mtime set (the order of
    latest_checkpoint)."""
    directory = run / name
    directory.mkdir(parents=True)
    state = torch.load(source, map_location="cpu", weights_only=True)
    state["step"] = step
    torch.save(state, directory / STATE_FILE)
    os.utime(directory, (mtime, mtime))
    return directory


def _truncate(path: Path) -> int:
    size = path.stat().st_size // 2
    with path.open("r+b") as f:
        f.truncate(size)
    return size


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _members(source: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(source) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where ``info``'s bytes start: after its local header (30 bytes, then its name and extra field)."""
    with path.open("rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len


def _patch(path: Path, edits: dict[int, int]) -> None:
    """Set the byte at each offset to its value, in place."""
    with path.open("r+b") as f:
        for offset, value in edits.items():
            f.seek(offset)
            f.write(bytes([value]))


def _damaged(tmp_path: Path, source: Path, how: str) -> Path:
    """A copy of ``source`` damaged ``how``; returns the copy's path."""
    path = tmp_path / how / STATE_FILE
    path.parent.mkdir()
    shutil.copyfile(source, path)
    if how == "truncated":
        _truncate(path)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random-bytes":
        path.write_bytes(bytes(range(7, 256)) * 40)
    elif how == "text":
        path.write_text("this is not a checkpoint\n")
    elif how == "wrong-member":  # a valid zip archive, not a torch one
        _zip(path, {"notes/readme.txt": b"hello"})
    elif how == "crc":  # one byte of a tensor's data flipped in place: the archive still opens
        with zipfile.ZipFile(path) as archive:
            info = max(archive.infolist(), key=lambda i: i.file_size)
        offset = _data_offset(path, info) + info.file_size // 2
        _patch(path, {offset: path.read_bytes()[offset] ^ 0xFF})
    elif how == "bad-pickle":  # the archive rebuilt with a data.pkl that is not a pickle (CRCs correct)
        _zip(path, {name: b"not a pickle" if name.endswith("/data.pkl") else data
                    for name, data in _members(source).items()})
    elif how == "no-storage":  # the archive rebuilt without the first tensor's bytes (CRCs correct)
        _zip(path, {name: data for name, data in _members(source).items() if not name.endswith("/data/0")})
    elif how == "missing-keys":
        torch.save({"config": {}, "seen_text": torch.zeros(2)}, path)
    elif how == "missing":
        path.unlink()
    return path


# ---- the check of one state.pt -------------------------------------------------------------------

def test_intact_checkpoint_passes_with_its_step(toy_state):
    assert inspect_checkpoint(toy_state.parent) == (None, 1)
    assert inspect_checkpoint(toy_state) == (None, 1)  # the file itself works too
    assert checkpoint_damage(toy_state.parent) is None


def test_each_damage_has_its_kind_and_reason(toy_state, tmp_path):
    size = toy_state.stat().st_size
    expected = {
        "truncated": ("truncated", f"truncated: {size // 2} bytes, a zip archive cut short before its central "
                                   "directory"),
        "empty": ("empty", "empty file: 0 bytes"),
        "random-bytes": ("not-zip", f"not a zip archive as torch.save writes: {249 * 40} bytes starting with "
                                    "b'\\x07\\x08\\t\\n'"),
        "text": ("not-zip", "not a zip archive as torch.save writes: 25 bytes starting with b'this'"),
        "missing-keys": ("missing-keys", "missing key(s) 'student', 'objective', 'optimizer', 'scheduler', "
                                         "'step', 'rng': not a checkpoint written by c2s's training loop"),
        "missing": ("missing", "no such file"),
    }
    for how, (kind, reason) in expected.items():
        damage, step = inspect_checkpoint(_damaged(tmp_path, toy_state, how).parent)
        assert (damage.kind, str(damage), step) == (kind, reason, None), how
    damage = checkpoint_damage(_damaged(tmp_path, toy_state, "crc").parent)
    assert damage.kind == "crc"
    assert re.fullmatch(r"CRC-32 mismatch in '[^']+/data/\d+': bytes changed after they were written",
                        str(damage)), str(damage)
    damage = checkpoint_damage(_damaged(tmp_path, toy_state, "wrong-member").parent)
    assert (damage.kind, str(damage)) == ("unreadable", "a zip archive but not one torch.save writes: no "
                                          "data.pkl member (1 member(s): 'notes/readme.txt')")
    damage = checkpoint_damage(_damaged(tmp_path, toy_state, "bad-pickle").parent)  # data.pkl overwritten
    assert (damage.kind, str(damage)) == ("unreadable", "a weights-only torch.load refuses its data.pkl: Unsupported "
                                          f"operand {ord('n')} (c2s unpickles tensors and plain values only)")
    path = _damaged(tmp_path, toy_state, "no-storage")  # a tensor's bytes gone: torch's own reader says so
    damage = checkpoint_damage(path)
    assert (damage.kind, str(damage).split(": file not found")[0]) == (
        "unreadable", "a zip archive torch.load cannot read: PytorchStreamReader failed locating file data/0")


def test_step_must_be_a_whole_number(toy_state, tmp_path):
    state = torch.load(toy_state, map_location="cpu", weights_only=True)
    for i, step in enumerate(("3", -1, True, 2.0)):
        (tmp_path / f"c{i}").mkdir()
        torch.save({**state, "step": step}, tmp_path / f"c{i}" / STATE_FILE)
        damage = checkpoint_damage(tmp_path / f"c{i}")
        assert (damage.kind, str(damage)) == ("missing-keys", f"'step' is {step!r}, not a whole number")
    (tmp_path / "zero").mkdir()
    torch.save({**state, "step": 0}, tmp_path / "zero" / STATE_FILE)  # a checkpoint before the first step
    assert inspect_checkpoint(tmp_path / "zero") == (None, 0)
    torch.save([state], tmp_path / "zero" / STATE_FILE)
    damage = checkpoint_damage(tmp_path / "zero")
    assert (damage.kind, str(damage)) == ("missing-keys", "holds a list, not a c2s checkpoint's dict")


# ---- what the check names, archive by archive (zipfile's own errors, as Python 3.11 raises them) ------

def test_a_zip_that_torch_did_not_write_names_its_first_three_members(tmp_path):
    for count, shown in ((0, "none"), (3, "'m0', 'm1', 'm2'"), (4, "'m0', 'm1', 'm2' ...")):
        path = _zip(tmp_path / f"z{count}" / STATE_FILE, {f"m{i}": b"x" for i in range(count)})
        damage = checkpoint_damage(path)
        assert (damage.kind, str(damage)) == ("unreadable", "a zip archive but not one torch.save writes: no "
                                              f"data.pkl member ({count} member(s): {shown})")


def test_crc_mismatches_name_three_members_and_count_the_rest(toy_state, tmp_path):
    with zipfile.ZipFile(toy_state) as archive:
        infos = [info for info in archive.infolist() if info.file_size > 0]  # in the archive's order
    assert len(infos) >= 4
    for count, rest in ((3, ""), (4, " and 1 more")):
        path = tmp_path / f"crc{count}" / STATE_FILE
        path.parent.mkdir()
        shutil.copyfile(toy_state, path)
        offsets = [_data_offset(path, info) + info.file_size // 2 for info in infos[:count]]
        data = path.read_bytes()
        _patch(path, {offset: data[offset] ^ 0xFF for offset in offsets})
        shown = ", ".join(repr(info.filename) for info in infos[:3])
        damage = checkpoint_damage(path)
        assert (damage.kind, str(damage)) == ("crc", f"CRC-32 mismatch in {shown}{rest}: bytes changed after "
                                              "they were written")


def test_a_member_that_cannot_be_read_is_named_first_in_archive_order(toy_state, tmp_path):
    # Two members' local headers overwritten (their first byte, of the signature PK\x03\x04): the archive still
    # opens from its central directory; zipfile refuses each member, and the first of them is named.
    path = tmp_path / "headers" / STATE_FILE
    path.parent.mkdir()
    shutil.copyfile(toy_state, path)
    with zipfile.ZipFile(path) as archive:
        first, second = archive.infolist()[1:3]
    _patch(path, {first.header_offset: 0, second.header_offset: 0})
    damage = checkpoint_damage(path)
    assert (damage.kind, str(damage)) == ("unreadable", f"zip member {first.filename!r} cannot be read: Bad magic "
                                          "number for file header")
    # Deflated members (torch.save stores them, torch.load reads either): changed bytes are zlib's error, not a
    # traceback. The first byte of a deflate stream holds its first block's type; 0b11 is reserved (RFC 1951).
    path = _zip(tmp_path / "deflated" / STATE_FILE, _members(toy_state), zipfile.ZIP_DEFLATED)
    assert inspect_checkpoint(path) == (None, 1)
    with zipfile.ZipFile(path) as archive:
        pickle_member = next(info for info in archive.infolist() if info.filename.endswith("/data.pkl"))
    _patch(path, {_data_offset(path, pickle_member): 0b111})
    damage = checkpoint_damage(path)
    assert (damage.kind, str(damage)) == ("unreadable", f"zip member {pickle_member.filename!r} cannot be read: "
                                          "Error -3 while decompressing data: invalid block type")


class _Foreign:
    """An object torch.save pickles by reference: loading it would import and build this class."""


def test_an_object_a_weights_only_load_refuses_is_named_and_never_built(toy_state, tmp_path):
    # Every key a resumed run reads is there: only the refusal to unpickle _Foreign stops this file.
    state = torch.load(toy_state, map_location="cpu", weights_only=True)
    path = tmp_path / "foreign" / STATE_FILE
    path.parent.mkdir()
    torch.save({**state, "note": _Foreign()}, path)
    damage = checkpoint_damage(path)
    assert (damage.kind, str(damage)) == (
        "unreadable", "a weights-only torch.load refuses its data.pkl: Unsupported global: GLOBAL "
        f"{_Foreign.__module__}._Foreign was not an allowed global by default (c2s unpickles tensors and plain "
        "values only)")


def test_a_checkpoint_saved_without_crcs_is_intact(toy_state, tmp_path):
    # torch.serialization.set_crc32_options(False) writes CRC 0 for every member; torch.load checks none then.
    state = torch.load(toy_state, map_location="cpu", weights_only=True)
    path = tmp_path / "nocrc" / STATE_FILE
    path.parent.mkdir()
    before = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, path)
    finally:
        torch.serialization.set_crc32_options(before)
    with zipfile.ZipFile(path) as archive:
        assert {info.CRC for info in archive.infolist()} == {0}
    assert inspect_checkpoint(path) == (None, 1)


def test_members_saved_without_a_crc_are_skipped_and_the_others_still_checked(toy_state, tmp_path):
    # The first member's CRC set to 0 in the central directory (what zipfile checks a member against: its
    # entry there holds the CRC-32 at byte 16), and a later member's bytes changed: that one is still found.
    path = tmp_path / "mixed" / STATE_FILE
    path.parent.mkdir()
    shutil.copyfile(toy_state, path)
    with zipfile.ZipFile(path) as archive:
        first, *rest = archive.infolist()
        central = archive.start_dir
    later = max(rest, key=lambda info: info.file_size)
    offset = _data_offset(path, later) + later.file_size // 2
    _patch(path, {central + 16 + i: 0 for i in range(4)} | {offset: path.read_bytes()[offset] ^ 0xFF})
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo(first.filename).CRC == 0 and first.file_size > 0
    damage = checkpoint_damage(path)
    assert (damage.kind, str(damage)) == ("crc", f"CRC-32 mismatch in {later.filename!r}: bytes changed after they "
                                          "were written")


def test_an_os_error_while_reading_is_named(toy_state, tmp_path, monkeypatch):
    # A disk that fails under the read (EIO): zipfile's open raises the OS's error, which the reason carries.
    def failing_disk(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(zipfile, "ZipFile", failing_disk)
    damage = checkpoint_damage(toy_state)
    assert (damage.kind, str(damage)) == ("unreadable", "cannot be read: [Errno 5] Input/output error")


def test_torch_load_errors_are_cut_to_one_plain_line(toy_state, monkeypatch):
    # What torch.load raises past the zip checks, as torch formats it: a C++ check's message with torch's request
    # for feedback appended, a weights-only refusal raised without the unpickler's error behind it (its advice
    # set in bold by terminal escapes), and an error with no message at all.
    raised = [RuntimeError("Expected is_heap_allocated() to be true, but got false.  (Could this error message be "
                           "improved?  If so, please report an enhancement request to PyTorch.)\nException raised "
                           "from ..."),  # c10's wording, as torch/lib/libc10.so holds it (torch 2.14.1)
              pickle.UnpicklingError("Weights only load failed. This file can still be loaded, \x1b[1mdo those steps "
                                     "only if you trust the source of the checkpoint\x1b[0m. \n\t(1) ..."),
              RuntimeError()]

    def load(*args, **kwargs):
        raise raised.pop(0)

    monkeypatch.setattr(torch, "load", load)
    reasons = [str(checkpoint_damage(toy_state)) for _ in range(3)]
    assert reasons == [
        "a zip archive torch.load cannot read: Expected is_heap_allocated() to be true, but got false.",
        "a zip archive torch.load cannot read: Weights only load failed. This file can still be loaded, do those "
        "steps only if you trust the source of the checkpoint.",
        "a zip archive torch.load cannot read: RuntimeError"]


def test_a_state_file_of_another_name_is_checked_itself(toy_state, tmp_path):
    path = tmp_path / "best.pt"
    shutil.copyfile(toy_state, path)
    assert inspect_checkpoint(path) == (None, 1)
    path.write_bytes(b"")
    assert inspect_checkpoint(path)[0].kind == "empty"


# ---- the newest intact checkpoint of a run ------------------------------------------------------

def _run(tmp_path: Path, toy_state: Path) -> tuple[Path, list[Path]]:
    """A run with checkpoints at steps 2, 4, 6 (oldest first, by mtime as Ray writes them)."""
    run = tmp_path / "run"
    names = ["checkpoint_2026-01-01_00-00-02.000000", "checkpoint_2026-01-01_00-00-04.000000",
             "checkpoint_2026-01-01_00-00-06.000000"]
    return run, [_checkpoint(run, name, toy_state, step, 1_700_000_000 + step)
                 for name, step in zip(names, (2, 4, 6))]


def test_newest_intact_checkpoint_skips_the_damaged_newer_ones(toy_state, tmp_path):
    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    chosen = newest_intact_checkpoint(run)
    assert (chosen.path, chosen.step, chosen.skipped) == (c6, 6, [])
    size6 = _truncate(c6 / STATE_FILE)
    (c4 / STATE_FILE).write_text("not a checkpoint")
    chosen = newest_intact_checkpoint(run)
    assert (chosen.path, chosen.step) == (c2, 2)
    assert [(path, damage.kind) for path, damage in chosen.skipped] == [(c6 / STATE_FILE, "truncated"),
                                                                      (c4 / STATE_FILE, "not-zip")]
    assert str(chosen.skipped[0][1]).startswith(f"truncated: {size6} bytes")
    assert latest_checkpoint(run) == c6  # the order is latest_checkpoint's


def test_no_intact_checkpoint_names_every_file(toy_state, tmp_path):
    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    _truncate(c6 / STATE_FILE)
    (c4 / STATE_FILE).write_bytes(b"")
    (c2 / STATE_FILE).write_text("x")
    with pytest.raises(CheckpointError) as err:
        newest_intact_checkpoint(run)
    assert str(err.value) == (
        f"no intact checkpoint under {run}: every state.pt is damaged: "
        f"{c6 / STATE_FILE} ({checkpoint_damage(c6)}); {c4 / STATE_FILE} (empty file: 0 bytes); "
        f"{c2 / STATE_FILE} (not a zip archive as torch.save writes: 1 bytes starting with b'x')")
    assert is_user_error(err.value)


def test_not_a_run_is_a_user_error(tmp_path):
    for path, message in ((tmp_path / "nowhere", f"{tmp_path / 'nowhere'} does not exist (expected a c2s run "
                                                  "directory or checkpoint directory)"),
                          (tmp_path, f"no checkpoint_*/state.pt under {tmp_path} (not a c2s run directory, or "
                                     "no checkpoint was reported yet)")):
        with pytest.raises(NoCheckpointError) as err:
            newest_intact_checkpoint(path)
        assert str(err.value) == message
        assert is_user_error(err.value) and isinstance(err.value, FileNotFoundError)  # predict catches those


# ---- Ray Train's snapshot, rewritten by --resume -------------------------------------------------

def _result(directory: Path, step: int) -> dict:
    return {"version": 0, "checkpoint_dir_name": directory.name, "metrics": {"step": step, "loss": 1.0 / step}}


def _snapshot(run: Path, checkpoints: list[Path]) -> dict:
    """Ray 2.60's _CheckpointManagerState as its _save_state writes it (three reports per checkpoint)."""
    results = [_result(c, s) for c, s in zip(checkpoints, (2, 4, 6))]
    snapshot = {"ray_version": "2.60.0", "checkpoint_results": results, "checkpoint_report_indices": [1, 3, 5],
                "latest_checkpoint_result": results[-1], "pending_training_results": [],
                "pending_validation_specs": [], "current_report_index": 6,
                "validated_checkpoint_dir_names": [checkpoints[0].name, checkpoints[2].name],
                "timed_out_validation_checkpoint_dir_names": [], "failed_validation_checkpoint_dir_names": []}
    (run / RAY_CHECKPOINT_SNAPSHOT).write_text(json.dumps(snapshot))
    return snapshot


def _ray_restores(run: Path) -> tuple[str, int, list[str]]:
    """What Ray Train's own CheckpointManager loads from the snapshot (no Ray started): the checkpoint it
    restores, its step, and the checkpoints it keeps track of."""
    from ray.air.config import CheckpointConfig
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager
    from ray.train.v2._internal.execution.storage import StorageContext

    manager = CheckpointManager(CheckpointConfig(num_to_keep=2),
                                StorageContext(storage_path=str(run.parent), experiment_dir_name=run.name))
    latest = manager.latest_checkpoint_result
    return latest.checkpoint.path, latest.metrics["step"], [r.checkpoint.path for r in manager._checkpoint_results]


def test_snapshot_is_rewritten_to_the_newest_intact_checkpoint(toy_state, tmp_path, capsys):
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import _CheckpointManagerState

    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    original = _snapshot(run, [c2, c4, c6])
    _CheckpointManagerState.model_validate(original)  # the hand-built snapshot is in Ray's schema
    original_text = (run / RAY_CHECKPOINT_SNAPSHOT).read_text()
    assert _ray_restores(run) == (str(c6), 6, [str(c2), str(c4), str(c6)])

    chosen = resume_from_intact(run)  # all intact: nothing changes
    assert (chosen.path, chosen.step, chosen.skipped) == (c6, 6, [])
    assert (run / RAY_CHECKPOINT_SNAPSHOT).read_text() == original_text
    assert not list(run.glob(RAY_CHECKPOINT_SNAPSHOT + ".*"))
    assert capsys.readouterr().out == ""

    _truncate(c6 / STATE_FILE)
    chosen = resume_from_intact(run)
    assert (chosen.path, chosen.step, [(p, d.kind) for p, d in chosen.skipped]) == (
        c4, 4, [(c6 / STATE_FILE, "truncated")])
    rewritten = json.loads((run / RAY_CHECKPOINT_SNAPSHOT).read_text())
    assert rewritten == {**original, "checkpoint_results": original["checkpoint_results"][:2],
                         "checkpoint_report_indices": [1, 3],
                         "latest_checkpoint_result": original["checkpoint_results"][1],
                         "validated_checkpoint_dir_names": [c2.name]}
    backup = run / (RAY_CHECKPOINT_SNAPSHOT + SNAPSHOT_BACKUP_SUFFIX)
    assert backup.read_text() == original_text
    assert sorted(p.name for p in run.glob(RAY_CHECKPOINT_SNAPSHOT + "*")) == [
        RAY_CHECKPOINT_SNAPSHOT, backup.name]  # no temp file left
    assert restored_step(run) == 4
    assert _ray_restores(run) == (str(c4), 4, [str(c2), str(c4)])  # Ray's own loader agrees
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"[c2s] checkpoint {c6 / STATE_FILE} is damaged ({checkpoint_damage(c6)}); resuming from "
                      f"{c4} (step 4) instead")
    assert len(out) == 2 and backup.name in out[1]
    assert (c6 / STATE_FILE).exists()  # the damaged file is left where it was


def test_snapshot_falls_back_past_several_damaged_checkpoints(toy_state, tmp_path):
    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    original = _snapshot(run, [c2, c4, c6])
    (c6 / STATE_FILE).write_bytes(b"")
    _truncate(c4 / STATE_FILE)
    chosen = resume_from_intact(run)
    assert (chosen.path, chosen.step) == (c2, 2)
    assert [p for p, _ in chosen.skipped] == [c6 / STATE_FILE, c4 / STATE_FILE]
    rewritten = json.loads((run / RAY_CHECKPOINT_SNAPSHOT).read_text())
    assert rewritten["checkpoint_results"] == rewritten["checkpoint_results"][:1] == [original["checkpoint_results"][0]]
    assert rewritten["checkpoint_report_indices"] == [1]
    assert _ray_restores(run) == (str(c2), 2, [str(c2)])


def test_snapshot_with_no_intact_checkpoint_is_left_alone(toy_state, tmp_path):
    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    _snapshot(run, [c2, c4, c6])
    before = (run / RAY_CHECKPOINT_SNAPSHOT).read_text()
    for c in (c2, c4, c6):
        _truncate(c / STATE_FILE)
    with pytest.raises(CheckpointError) as err:
        resume_from_intact(run)
    message = str(err.value)
    assert message.startswith(f"--resume {run}: no intact checkpoint to resume from: every checkpoint Ray Train "
                               f"lists in {RAY_CHECKPOINT_SNAPSHOT} is damaged: {c6 / STATE_FILE} (truncated: ")
    assert [message.index(str(c / STATE_FILE)) > 0 for c in (c6, c4, c2)] == [True] * 3
    assert (run / RAY_CHECKPOINT_SNAPSHOT).read_text() == before
    assert not list(run.glob(RAY_CHECKPOINT_SNAPSHOT + ".*"))


def test_no_snapshot_or_no_checkpoint_yet_restores_nothing(tmp_path):
    assert resume_from_intact(tmp_path) is None
    (tmp_path / RAY_CHECKPOINT_SNAPSHOT).write_text(json.dumps({"latest_checkpoint_result": None}))
    assert resume_from_intact(tmp_path) is None
    (tmp_path / RAY_CHECKPOINT_SNAPSHOT).write_text("{not json")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / RAY_CHECKPOINT_SNAPSHOT}: not JSON")):
        resume_from_intact(tmp_path)


# ---- the console: c2s eval and c2s train --resume --------------------------------------------------

def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].endswith(" (--debug shows the traceback)")
    return lines[0]


def test_eval_uses_the_newest_intact_checkpoint(toy_state, tmp_path, cache_root, capsys):
    run = tmp_path / "run"
    c2 = _checkpoint(run, "checkpoint_2026-01-01_00-00-02.000000", toy_state, 2, 1_700_000_002)
    c4 = _checkpoint(run, "checkpoint_2026-01-01_00-00-04.000000", toy_state, 4, 1_700_000_004)
    size = _truncate(c4 / STATE_FILE)
    assert cli_main(["eval", str(run), "evaluation.max_images=1", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == (
        f"[c2s] checkpoint {c4 / STATE_FILE} is damaged (truncated: {size} bytes, a zip archive cut short "
        f"before its central directory); using {c2} (step 2)")
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert (printed["step"], printed["images"], printed["out"]) == (2, 1, str(run / f"eval_{c2.name}"))
    assert json.loads((run / f"eval_{c2.name}" / "metrics.json").read_text())["step"] == 2


def test_eval_with_no_intact_checkpoint_or_no_run_is_one_line(toy_state, tmp_path, cache_root, capsys):
    run = tmp_path / "run"
    c2 = _checkpoint(run, "checkpoint_2026-01-01_00-00-02.000000", toy_state, 2, 1_700_000_002)
    c4 = _checkpoint(run, "checkpoint_2026-01-01_00-00-04.000000", toy_state, 4, 1_700_000_004)
    _truncate(c4 / STATE_FILE)
    (c2 / STATE_FILE).write_bytes(b"")
    assert cli_main(["eval", str(run)]) == 2
    line = _one_error_line(capsys.readouterr().err, "c2s eval")
    assert line == (f"c2s eval: error: no intact checkpoint under {run}: every state.pt is damaged: "
                    f"{c4 / STATE_FILE} ({checkpoint_damage(c4)}); {c2 / STATE_FILE} (empty file: 0 bytes) "
                    "(--debug shows the traceback)")
    assert cli_main(["eval", str(c4)]) == 2  # a damaged checkpoint directory named directly
    assert _one_error_line(capsys.readouterr().err, "c2s eval") == (
        f"c2s eval: error: checkpoint {c4 / STATE_FILE} is damaged ({checkpoint_damage(c4)}) "
        "(--debug shows the traceback)")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "nowhere"):
        assert cli_main(["eval", str(path)]) == 2
        line = _one_error_line(capsys.readouterr().err, "c2s eval")
        assert str(path) in line and ("does not exist" in line or "no checkpoint_*/state.pt under" in line)


def test_resume_with_no_intact_checkpoint_stops_before_ray(toy_state, tmp_path, cache_root, capsys):
    run, (c2, c4, c6) = _run(tmp_path, toy_state)
    dump_config(load_config("toy_tiny", []), run / "config.json")
    _snapshot(run, [c2, c4, c6])
    for c in (c2, c4, c6):
        (c / STATE_FILE).write_text("gone")
    assert cli_main(["train", "--resume", str(run), "train.iters=9"]) == 2
    line = _one_error_line(capsys.readouterr().err, "c2s train")
    assert all(f"{c / STATE_FILE} (not a zip archive" in line for c in (c2, c4, c6)), line
    assert not (run / "metrics.jsonl").exists()  # nothing started


# ---- one resumed training run ----------------------------------------------------------------------


# The end-to-end resume past a damaged checkpoint (Ray Train restoring the newest intact one) shares its
# Train runs with the killed-worker run: tests/integration/test_train_job.py::test_resume_past_a_damaged_checkpoint_restores_the_newest_intact_one.
