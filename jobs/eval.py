"""Entrypoint for `ray job submit --working-dir . -- python jobs/eval.py CHECKPOINT [key=value ...]`."""

import sys
from pathlib import Path

# `ray job submit --working-dir .` runs this file from the repo root; make `c2s` importable either way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2s.cli import quiet_ray_console, run_command  # noqa: E402

quiet_ray_console()  # before ray is imported
from c2s.evaluate import main  # noqa: E402

if __name__ == "__main__":
    # A config error prints its message alone (exit 2); add --debug for the traceback.
    sys.exit(run_command("jobs/eval.py", main, sys.argv[1:]))
