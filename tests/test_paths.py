"""c2s.paths.atomic_path: the leftovers of a writer killed mid-write are removed by the next writer of the path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from c2s.paths import _owner_tag, atomic_path, stale_temps


def _killed_writer(final) -> list:
    """A real process that fills atomic_path's temporary folder for ``final`` and is SIGKILLed mid-write."""
    code = textwrap.dedent(f"""
        import time
        from c2s.paths import atomic_path
        with atomic_path({str(final)!r}) as tmp:
            tmp.mkdir()
            (tmp / "part-0.parquet").write_bytes(b"0" * 4096)
            print("writing", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return [p for p in final.parent.iterdir() if p.name != final.name]


def test_the_next_writer_removes_what_a_killed_writer_left_and_says_so(tmp_path, capsys):
    final = tmp_path / "tokens" / "0ad8c2797e4c94773d7a"
    left = _killed_writer(final)
    assert len(left) == 1 and (left[0] / "part-0.parquet").stat().st_size == 4096  # SIGKILL: no cleanup ran
    assert left[0].name.startswith(f".{final.name}.{_owner_tag().rsplit('-', 1)[0]}-") and left[0].is_dir()
    assert stale_temps(final) == left
    # not ours to remove: another host's, a live process's (this one), another path's, another form of name
    host = _owner_tag().rsplit("-", 1)[0]
    keep = [tmp_path / "tokens" / f".{final.name}.otherhost-{left[0].name.split('-')[-1]}",
            tmp_path / "tokens" / f".{final.name}.{_owner_tag()}.abcd1234.tmp",
            tmp_path / "tokens" / f".e87ff150c3ac33adc583.{host}-999999999.abcd1234.tmp",
            tmp_path / "tokens" / f".{final.name}.abcd1234.tmp"]
    for path in keep:
        path.mkdir()
    assert stale_temps(final) == left

    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "manifest.json").write_text("{}")
    err = capsys.readouterr().err
    assert f"[c2s] removed 1 temporary copy of {final} that a process killed while writing it left behind: " \
           f"{left[0].name}" in err
    assert not left[0].exists() and (final / "manifest.json").read_text() == "{}"
    assert all(path.is_dir() for path in keep)
    assert sorted(p.name for p in final.parent.iterdir()) == sorted([final.name, *(p.name for p in keep)])


def test_a_dead_writers_old_copy_and_file_temps_are_removed_too(tmp_path, capsys):
    final = tmp_path / "metrics.json"
    host = _owner_tag().rsplit("-", 1)[0]
    dead = tmp_path / f".metrics.json.{host}-999999999.x1y2z3ab.tmp"
    dead_old = tmp_path / f".metrics.json.{host}-999999999.x1y2z3ab.tmp.old"
    dead.write_text("half")
    dead_old.mkdir()
    with atomic_path(final) as tmp:
        tmp.write_text("whole")
    assert "removed 2 temporary copies" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with atomic_path(final) as tmp:  # nothing left to remove: nothing said
        tmp.write_text("again")
    assert capsys.readouterr().err == "" and final.read_text() == "again"


def test_a_failed_block_still_removes_its_own_temp(tmp_path):
    final = tmp_path / "folder"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.mkdir()
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
