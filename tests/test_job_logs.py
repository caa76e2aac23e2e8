"""What keeps a submitted job's log to c2s's own lines (issue 14 item 9); no Ray started here.

The end-to-end count is in tests/integration/test_job_submit.py.
"""

from __future__ import annotations

import json
import logging
import re

from c2s.cli import RAY_SKIP_LINES
from c2s.train.loop import quiet_report_log
from c2s.train.trainer import job_runtime_env

# Lines measured in a submitted toy_tiny job's log (Ray 2.60), the worker prefix stripped as Ray's filter sees them.
RAY_NOISE = [
    "[2026-11-25 18:52:52,071 E 4673 4703] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and "
    "ID: 'e661d04779fd5756be22ba3f02000000' has constructor arguments in the object store and max_restarts > 0. "
    "If the arguments in the object store go out of scope or are lost, the actor restart will fail.",
    "/work/main/.venv/lib/python3.11/site-packages/ray/data/_internal/execution/interfaces/execution_options.py:436: "
    "RayDeprecationWarning: `ExecutionOptions.exclude_resources` is deprecated and will be removed after January "
    "2027. Use `ExecutionOptions.label_selector` to constrain Ray Data work to labeled nodes.",
    "  self.exclude_resources = exclude_resources",
]
KEPT = [
    "[toy_tiny-20261125-185227] step 6/6  loss 12.476 (global 2.899 local 2.804 pixel 9.382)  lr 0.0e+00  2.0 img/s",
    "Starting execution of Dataset train_0353rbzLWPEXuh8wlGXEZg_0. Full logs are in /tmp/ray/session_x/logs/ray-data",
    "[2026-11-25 18:52:52,071 E 4673 4703] core_worker.cc:99: some other error",
    "RayDeprecationWarning: `ray.train.report` is deprecated",
]


def test_skip_filter_drops_only_the_measured_ray_noise():
    skip = re.compile(RAY_SKIP_LINES)
    assert [bool(skip.search(line)) for line in RAY_NOISE] == [True, True, True]
    assert [bool(skip.search(line)) for line in KEPT] == [False, False, False, False]


def test_job_runtime_env_disables_ray_data_progress_bars_without_clashing_with_the_job():
    assert job_runtime_env({}) == {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}}
    assert job_runtime_env({"RAY_DATA_DISABLE_PROGRESS_BARS": "0"}) == {
        "env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "0"}}  # the user's own choice wins
    submitted = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(
        {"runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "0"}},
         "metadata": {"job_submission_id": "raysubmit_1"}})}
    assert job_runtime_env(submitted) == {}  # set by the job already: Ray would refuse the merge
    plain_job = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"working_dir": "x"}, "metadata": {}})}
    assert job_runtime_env(plain_job) == {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}}
    # the driver's cluster address reaches Ray's own actors (several Ray instances on one machine)
    with_address = dict(plain_job, RAY_ADDRESS="10.0.0.1:6379")
    assert job_runtime_env(with_address) == {
        "env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_ADDRESS": "10.0.0.1:6379"}}


def test_per_report_line_is_below_the_train_context_loggers_level():
    from ray.train.v2._internal.execution import context as train_context

    before = train_context.logger.level
    try:
        train_context.logger.setLevel(logging.NOTSET)
        quiet_report_log()
        assert not train_context.logger.isEnabledFor(logging.INFO)  # "Reporting training result N: ..."
        assert train_context.logger.isEnabledFor(logging.WARNING)
    finally:
        train_context.logger.setLevel(before)
