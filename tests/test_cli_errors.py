"""Config errors reach the console as one line (exit 2); --debug shows the traceback (c2s/cli.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from c2s.cli import is_user_error, main, run_command
from c2s.config import ConfigError
from c2s.errors import PreflightError

REPO = Path(__file__).resolve().parents[1]
MESSAGE = "unknown config key 'loss.tua'. Closest valid keys: loss.tau, loss.beta, loss.alpha."


def test_misspelt_key_prints_the_message_alone(capsys):
    assert main(["train", "toy_tiny", "loss.tua=0.1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"c2s train: error: {MESSAGE} (--debug shows the traceback)\n"


def test_debug_shows_the_traceback():
    with pytest.raises(ConfigError, match="unknown config key 'loss.tua'"):
        main(["train", "toy_tiny", "loss.tua=0.1", "--debug"])


def test_job_entrypoint_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "jobs/train.py", "toy_tiny", "loss.tua=0.1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"jobs/train.py: error: {MESSAGE} (--debug shows the traceback)"]


def test_only_user_errors_are_shortened():
    assert is_user_error(ConfigError("x")) and is_user_error(PreflightError("x"))

    def crash(argv):
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):
        run_command("c2s x", crash, [])
    assert run_command("c2s x", lambda argv: None, ["--debug"]) == 0
