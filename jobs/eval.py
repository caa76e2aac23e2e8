"""Entrypoint for `ray job submit --working-dir . -- python jobs/eval.py CHECKPOINT [key=value ...]`."""

import sys

from c2s.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
