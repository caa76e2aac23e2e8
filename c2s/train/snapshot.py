"""Ray Train's checkpoint snapshot: the step a run restores, and an intact checkpoint for ``--resume``.

Ray Train V2 resumes a run from ``RUN/checkpoint_manager_snapshot.json``. :func:`restored_step` reads the step
of the checkpoint it names (where the run's batch stream starts); when that checkpoint is damaged
(c2s.train.checkpoint.inspect_checkpoint), :func:`resume_from_intact` rewrites the snapshot to name the newest
intact one. Within one ``fit()`` no rewrite is needed: Ray Train's own retry restores only checkpoints it has
registered, and it registers one only after every file is copied into the run (see docs/training.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from c2s.train.checkpoint import (
    STATE_FILE,
    CheckpointDamage,
    CheckpointError,
    IntactCheckpoint,
    damage_summary,
    inspect_checkpoint,
)

# Ray Train V2 (2.60) keeps its checkpoint bookkeeping in <storage_path>/<name>/ under this name and restores
# ``latest_checkpoint_result`` from it (ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py,
# CheckpointManager._maybe_load_state_from_storage / _save_state; constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).
RAY_CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"


def restored_step(run_dir: str | Path) -> int:
    """The step of the checkpoint Ray Train restores for ``run_dir`` (0 when it restores none).

    Read from Ray Train's own snapshot, which it writes when it registers a checkpoint and reads on
    (re)start, so the stream starts where the restored state does. The step is the ``step`` metric the
    training loop reports with every checkpoint.
    """
    path = Path(run_dir) / RAY_CHECKPOINT_SNAPSHOT
    if not path.is_file():
        return 0
    try:
        latest = json.loads(path.read_text()).get("latest_checkpoint_result")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{path}: Ray Train's checkpoint snapshot is not a JSON object ({err}); cannot tell "
                         "which step the run resumes from") from err
    if latest is None:
        return 0
    step = latest.get("metrics", {}).get("step")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"{path}: the latest checkpoint ({latest.get('checkpoint_dir_name')!r}) has no "
                         f"integer 'step' metric (got {step!r}); expected a checkpoint reported by c2s's loop")
    return step


SNAPSHOT_BACKUP_SUFFIX = ".before-fallback"


def _snapshot_schema_error(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}; not Ray Train 2.60's checkpoint snapshot, cannot tell which "
                           "checkpoint the run resumes from")


def resume_from_intact(run_dir: str | Path) -> IntactCheckpoint | None:
    """Before ``--resume`` starts Ray: make Ray Train restore an intact checkpoint.

    Ray Train V2 restores ``latest_checkpoint_result`` of ``RUN/checkpoint_manager_snapshot.json``. Its schema
    is ``_CheckpointManagerState`` in ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py (Ray
    2.60): ``checkpoint_results`` (``{"version", "checkpoint_dir_name", "metrics"}`` each) with the parallel
    ``checkpoint_report_indices``, ``latest_checkpoint_result`` (one of those entries), the parallel
    ``pending_training_results`` / ``pending_validation_specs`` (entries of ``checkpoint_results``),
    ``current_report_index`` and three lists of checkpoint dir names by validation status. ``_load_state``
    looks ``latest_checkpoint_result`` and the pending entries up by dir name among ``checkpoint_results``,
    asserts the parallel lists' lengths, and ``_assert_checkpoints_exist`` fails on a listed directory
    that is gone.

    The checkpoint Ray would restore is checked (c2s.train.checkpoint.inspect_checkpoint). When it is
    damaged, the others of ``checkpoint_results`` are tried newest first (by report index) and the snapshot
    is rewritten (a temp file, then ``os.replace``; the original kept beside it as
    ``checkpoint_manager_snapshot.json.before-fallback``) with the intact one as ``latest_checkpoint_result``
    and the damaged ones dropped from every list; their directories stay on disk, untouched.

    Returns None when there is nothing to restore (no snapshot, or none reported yet), else the checkpoint
    Ray will restore with the damaged ones skipped. :class:`CheckpointError` naming every file and its
    damage when none is intact, or when the snapshot is not in Ray's schema.
    """
    run_dir = Path(run_dir)
    path = run_dir / RAY_CHECKPOINT_SNAPSHOT
    if not path.is_file():
        return None
    original = path.read_text()
    try:
        snapshot = json.loads(original)
    except json.JSONDecodeError as err:
        raise _snapshot_schema_error(path, f"not JSON ({err})") from err
    if not isinstance(snapshot, dict):
        raise _snapshot_schema_error(path, "not a JSON object")
    latest = snapshot.get("latest_checkpoint_result")
    if latest is None:
        return None
    results, indices = snapshot.get("checkpoint_results"), snapshot.get("checkpoint_report_indices")
    if not isinstance(results, list) or not isinstance(indices, list) or len(results) != len(indices):
        raise _snapshot_schema_error(path, "'checkpoint_results' and 'checkpoint_report_indices' are not lists "
                                           "of one length")
    entries = [latest, *results]
    if not all(isinstance(e, dict) and isinstance(e.get("checkpoint_dir_name"), str) for e in entries):
        raise _snapshot_schema_error(path, "a checkpoint result without a 'checkpoint_dir_name'")
    # The one Ray restores first, then the rest it still lists, newest (highest report index) first.
    order = sorted(zip(results, indices), key=lambda pair: pair[1], reverse=True)
    candidates = [latest, *(r for r, _ in order if r["checkpoint_dir_name"] != latest["checkpoint_dir_name"])]
    skipped: list[tuple[Path, CheckpointDamage]] = []
    for entry in candidates:
        directory = run_dir / entry["checkpoint_dir_name"]
        damage, step = inspect_checkpoint(directory)
        if damage is None:
            break
        skipped.append((directory / STATE_FILE, damage))
    else:
        raise CheckpointError(f"--resume {run_dir}: no intact checkpoint to resume from: every checkpoint Ray "
                              f"Train lists in {path.name} is damaged: {damage_summary(skipped)}")
    chosen = IntactCheckpoint(directory, int(step), skipped)
    if not skipped:
        return chosen
    dropped = {p.parent.name for p, _ in skipped}
    kept = [(r, i) for r, i in zip(results, indices) if r["checkpoint_dir_name"] not in dropped]
    pending = [(r, s) for r, s in zip(snapshot.get("pending_training_results", []),
                                      snapshot.get("pending_validation_specs", []))
               if r.get("checkpoint_dir_name") not in dropped]
    rewritten = {**snapshot,
                 "checkpoint_results": [r for r, _ in kept], "checkpoint_report_indices": [i for _, i in kept],
                 "latest_checkpoint_result": entry,
                 "pending_training_results": [r for r, _ in pending],
                 "pending_validation_specs": [s for _, s in pending]}
    for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                "failed_validation_checkpoint_dir_names"):
        if isinstance(snapshot.get(key), list):
            rewritten[key] = [name for name in snapshot[key] if name not in dropped]
    backup = path.with_name(path.name + SNAPSHOT_BACKUP_SUFFIX)
    n = 1
    while backup.exists():  # an earlier fallback's backup is kept too
        n += 1
        backup = path.with_name(f"{path.name}{SNAPSHOT_BACKUP_SUFFIX}.{n}")
    backup.write_text(original)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(rewritten))
    os.replace(temp, path)
    for state_file, damage in skipped:
        print(f"[c2s] checkpoint {state_file} is damaged ({damage}); resuming from {chosen.path} "
              f"(step {chosen.step}) instead", flush=True)
    print(f"[c2s] Ray Train's {path.name} now restores {chosen.path.name} (the damaged checkpoint(s) dropped "
          f"from it, their files left in place); the original is kept as {backup.name}", flush=True)
    return chosen
