"""Bad training data names its file through Ray's wrappers (unit: the exception classes, no Ray started).

The chains are the ones Ray 2.60 builds: Ray Data raises ``UserCodeException("UDF failed to process a data
block.") from`` the UDF's error (ray/data/_internal/planner/plan_udf_map_op.py); a remote failure arrives
as a ``RayTaskError`` holding it as ``cause`` and the chain as ``traceback_str`` (ray/exceptions.py); Ray
Train's ``WorkerGroupError`` keeps the workers' exceptions in ``worker_failures`` and a truncated text in
its message (ray/train/v2/_internal/execution/worker_group/poll.py).
"""

from __future__ import annotations

import pickle

import pytest
from ray.exceptions import RayTaskError, UserCodeException
from ray.train import WorkerGroupError

from c2s.data.readers import BadSampleError, bad_sample_message
from c2s.train.loop import BAD_SAMPLE_MARKER, NONFINITE_MARKER, NonFiniteLoss, raise_if_stopped
from c2s.train.trainer import format_progress

MESSAGE = ("cannot decode image /data/toy/img_dir/train/000005.png (mask /data/toy/ann_dir/train/000005.png): "
           "image file is truncated")


def _wrapped() -> UserCodeException:
    try:
        try:
            raise BadSampleError(MESSAGE, kind="image", path="/data/toy/img_dir/train/000005.png")
        except BadSampleError as err:
            raise UserCodeException("UDF failed to process a data block.") from err
    except UserCodeException as outer:
        return outer


def test_bad_sample_error_pickles_with_its_fields():
    err = pickle.loads(pickle.dumps(BadSampleError(MESSAGE, kind="ids", path="/m.png", ids=(21, 77))))
    assert (str(err), err.kind, err.path, err.ids) == (MESSAGE, "ids", "/m.png", (21, 77))


def test_found_through_user_code_exception_and_ray_task_error():
    assert bad_sample_message(_wrapped()) == MESSAGE
    task_error = RayTaskError("MapBatches(_Loader)", "Traceback ...\nUserCodeException: UDF failed", _wrapped())
    assert bad_sample_message(task_error) == MESSAGE
    assert bad_sample_message(task_error.as_instanceof_cause()) == MESSAGE


def test_found_in_worker_failures_and_in_text_when_the_instance_is_lost():
    truncated = "Training failed ... UserCodeException: UDF failed ... (Output truncated. See individual worker logs"
    group = WorkerGroupError(truncated, {0: _wrapped()})
    assert bad_sample_message(group) == MESSAGE
    # Pickling drops __cause__: only the traceback text still holds the BadSampleError line.
    text_only = RayTaskError("split_coordinator", f"Traceback ...\nc2s.data.readers.BadSampleError: {MESSAGE}\n\n"
                                                  "The above exception was the direct cause of ...\n"
                                                  "ray.exceptions.UserCodeException: UDF failed",
                             UserCodeException("UDF failed to process a data block."))
    assert bad_sample_message(WorkerGroupError("x", {1: text_only})) == MESSAGE
    assert bad_sample_message(WorkerGroupError("x", {0: RuntimeError("CUDA out of memory")})) is None


def test_a_retry_of_a_run_stopped_on_a_bad_file_fails_at_once(tmp_path):
    raise_if_stopped(tmp_path)  # nothing recorded: returns
    (tmp_path / BAD_SAMPLE_MARKER).write_text(MESSAGE)
    with pytest.raises(BadSampleError) as info:
        raise_if_stopped(tmp_path)
    assert str(info.value) == MESSAGE
    (tmp_path / NONFINITE_MARKER).write_text('{"step": 7, "component": "loss_nel", "value": NaN}')
    with pytest.raises(NonFiniteLoss, match=r"stopped on a non-finite loss: .*\"step\": 7"):
        raise_if_stopped(tmp_path)


def test_progress_line_shows_skipped_count():
    row = {"step": 3, "kind": "train", "loss": 1.0, "lr": 1e-4, "images_per_s": 5.0, "teacher_wait_frac": 0.1}
    assert not format_progress(row, 10, "run").endswith("skipped 0")
    assert format_progress({**row, "bad_samples_skipped": 2}, 10, "run").endswith("teacher-wait 10%  skipped 2")
