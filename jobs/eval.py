"""Entrypoint for `ray job submit --working-dir . -- python jobs/eval.py CHECKPOINT [key=value ...]`."""

import sys
from pathlib import Path

# `ray job submit --working-dir .` runs this file from the repo root; make `c2s` importable either way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2s.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
