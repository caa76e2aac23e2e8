"""Errors that more than one room raises (so no room imports another's just to name an error).

A :class:`PreflightError` stops a job on the driver before any actor or worker starts: the inputs
(c2s/inputs.py), the resources and placement (c2s/train/resolve.py, c2s/train/cluster.py), the run storage
(c2s/train/storage.py). ``c2s`` prints its message alone (c2s/cli.py, USER_ERRORS).
"""

from __future__ import annotations


class PreflightError(RuntimeError):
    """A job cannot start: names the key/path/resource and what was expected."""
