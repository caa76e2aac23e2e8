"""Entrypoint for `ray job submit --working-dir . -- python jobs/train.py CONFIG key=value ...`.

Connects to the cluster's Ray (RAY_ADDRESS, set by `ray job submit`) or starts a local one.
"""

import sys

from c2s.train.trainer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
