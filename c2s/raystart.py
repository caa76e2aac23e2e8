"""Ray start-up, in one place: every entry point that needs Ray (``c2s train``, ``c2s tokens``, ``c2s sweep``,
``c2s demo``, jobs/) calls :func:`init_ray`.

The lowest layer of the harness: it imports nothing from c2s, so the token cache (c2s.teacher.cache), the
training driver (c2s.train.trainer) and the sweep can all start Ray without importing each other.
"""

from __future__ import annotations

import json
import os
from typing import Any

# Set for every task and actor of the job. Ray Data builds Train V2's datasets inside its own actors
# (DatasetManager, SplitCoordinator), whose DataContext is not the driver's: without this each of them
# streams per-operator progress bars (hundreds of lines per epoch in a job log). Ray Data reads it in
# ray/data/context.py (DEFAULT_ENABLE_PROGRESS_BARS).
JOB_ENV_VARS = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}


def job_runtime_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``ray.init``'s runtime_env: :data:`JOB_ENV_VARS` (a value in ``environ`` wins), less the keys a
    submitted job's own runtime_env sets already (Ray refuses to merge one key from both:
    ray/_private/worker.py, ``_merge_runtime_env``)."""
    environ = os.environ if environ is None else environ
    submitted: dict[str, Any] = {}
    if environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        submitted = (json.loads(environ["RAY_JOB_CONFIG_JSON_ENV_VAR"]).get("runtime_env") or {}).get("env_vars") or {}
    env_vars = {k: environ.get(k, v) for k, v in JOB_ENV_VARS.items() if k not in submitted}
    # The job's cluster address for Ray's own actors too: Train's PlacementGroupCleaner queries the state API
    # without an address and, on a machine running several Ray instances, dies with "Found multiple active
    # Ray instances" (a 30-line traceback in the job log) unless RAY_ADDRESS names the one it belongs to.
    if environ.get("RAY_ADDRESS") and "RAY_ADDRESS" not in submitted:
        env_vars["RAY_ADDRESS"] = environ["RAY_ADDRESS"]
    return {"env_vars": env_vars} if env_vars else {}


def init_ray(num_cpus: int | None = None, *, log_to_driver: bool | None = None) -> None:
    """Connect to the cluster's Ray named by RAY_ADDRESS (``ray job submit`` sets it; ``RAY_ADDRESS=auto`` joins
    a ``ray start`` cluster on this machine), else start a local Ray of this process's own.

    Never Ray's implicit join (``ray.init()`` without an address connects to the cluster named in
    /tmp/ray/ray_current_cluster, which ``ray start`` and ``ray.cluster_utils.Cluster`` write): sweeps started
    while the test suite's multi-node scenarios ran joined that simulated cluster (2026-12-05) and every
    trial died with it; ``c2s demo`` there would have been refused its num_cpus.

    A local Ray keeps worker logs in its session folder (``log_to_driver`` default: only when connecting to
    a cluster): the job prints one progress line per log interval itself (c2s.train.trainer.ProgressTail),
    instead of Ray's per-actor log stream. ``log_to_driver=False`` keeps them off in both cases (the sweep:
    trials log to their own files).
    """
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
        runtime_env = job_runtime_env() or None
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], runtime_env=runtime_env,
                     log_to_driver=True if log_to_driver is None else log_to_driver)
        else:
            ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env,
                     log_to_driver=bool(log_to_driver))
    # One readable line per log interval from the job itself instead of per-operator progress bars.
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
