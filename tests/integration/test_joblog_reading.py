"""tests/joblog.py sorts a job's log by who wrote each line (no Ray started here). The lines are a submitted
toy_tiny job's (Ray 2.60), with the crash dump of an unrelated Ray worker that once landed in one (2026-12-05)."""

from __future__ import annotations

from joblog import read_job_log

RUN = "toy_tiny-20261205-101010"
C2S = [
    f"[c2s] run {RUN}: segformer_tiny on toy_stuff (6 seen classes), 2 steps x 4 images, 1 worker(s), teacher pool",
    f"[{RUN}] step 1/2  loss 12.476 (global 2.899 local 2.804 pixel 9.382)  lr 1.0e-04  2.0 img/s  teacher-wait 40%",
    f"[{RUN}] step 2/2  loss 12.101 (global 2.801 local 2.700 pixel 9.100)  lr 0.0e+00  2.1 img/s  teacher-wait 35%",
    '{"run_dir": "/tmp/runs/' + RUN + '", "wall_s": 31.2, "hIoU": 10.5}',
]
RAY_STARTUP = [
    "2026-12-05 10:10:10,123\tINFO job_manager.py:568 -- Runtime env is setting up.",
    "Starting execution of Dataset train_0353rbzLWPEXuh8wlGXEZg_0. Full logs are in /tmp/ray/session_x/logs/ray-data",
]
CRASH_DUMP = [
    "(raylet) [mutex.cc : 1957] RAW: Check w->waitp->cond == nullptr failed: Lock: Mutex corrupt: waiting writer "
    "with no waiters",
    "*** SIGABRT received at time=1764929410 on cpu 1 ***",
    "PC: @     0x7f3c2a4969fc  (unknown)  pthread_kill",
    "    @     0x7f3c29d0f2d0        208  absl::lts_20230802::AbslFailureSignalHandler()",
    "[2026-12-05 10:10:11,001 E 4673 4703] logging.cc:474: *** SIGABRT received at time=1764929410 on cpu 1 ***",
]
RAY_NOISE = [
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'step': 1}, validation_spec=None)",
    "- MapBatches(seen_labels)->MapBatches(TeacherActor): Tasks: 1; Actors: 1; Queued blocks: 0; Resources: 1.0 "
    "CPU, 2.0MB object store: 100%|██████████| 8.00/8.00 [00:02<00:00, 3.47 row/s]",
    "Running Dataset: train_0. Active & requested resources: 1/2 CPU, 2.0MB/300.0MB object store: : 0.00 row [00:00, ? row/s]",
]


def test_c2s_lines_are_counted_apart_from_a_crash_dump():
    log = read_job_log("\n".join([C2S[0], *RAY_STARTUP, C2S[1], *CRASH_DUMP, C2S[2], C2S[3]]), RUN)
    assert log.c2s == C2S
    assert log.forbidden == []
    assert log.crash == CRASH_DUMP
    assert log.other == RAY_STARTUP
    context = log.context()
    assert context.startswith("NOTE: a Ray process crashed during the job (5 crash line(s))")
    assert "Mutex corrupt" in context and C2S[2] in context


def test_ray_per_report_lines_and_progress_bars_are_forbidden():
    log = read_job_log("\n".join([*C2S, *RAY_NOISE]), RUN)
    assert log.forbidden == RAY_NOISE
    assert log.c2s == C2S and log.crash == []


def test_an_entrypoint_error_is_a_c2s_line_and_a_stranger_run_name_is_not():
    error = "jobs/train.py: error: work_dir = 'runs' is a relative path"
    stranger = "[other-run] step 1/2  loss 1.0"
    log = read_job_log("\n".join([error, stranger]), RUN)
    assert log.c2s == [error] and log.other == [stranger]
    assert read_job_log(stranger, None).c2s == []
    assert not read_job_log("\n".join(C2S)).context().startswith("NOTE")


def test_crash_lines_in_ray_log_files_since_the_test_started(tmp_path):
    """conftest's failure note reads the session's Ray log files: the crash written during the test, not one
    written before it, nor a healthy worker's lines."""
    import os

    from conftest import ray_crash_lines

    old, new, healthy = tmp_path / "raylet.err", tmp_path / "python-core-worker-1.log", tmp_path / "raylet.out"
    old.write_text(CRASH_DUMP[0] + "\n")
    os.utime(old, (1000.0, 1000.0))
    new.write_text("\n".join(["[2026-12-05 10:10:10,000 I 1 2] core_worker.cc:1: Constructing CoreWorker",
                              *CRASH_DUMP[1:3]]) + "\n")
    healthy.write_text("\n".join(RAY_STARTUP) + "\n")
    lines = ray_crash_lines(tmp_path, since=2000.0)
    assert lines == [f"python-core-worker-1.log: {CRASH_DUMP[1]}", f"python-core-worker-1.log: {CRASH_DUMP[2]}"]
    assert ray_crash_lines(tmp_path, since=0.0)[0] == f"python-core-worker-1.log: {CRASH_DUMP[1]}"
    assert len(ray_crash_lines(tmp_path, since=0.0)) == 3


def test_deprecations_in_ray_log_files_that_point_at_this_repository(tmp_path):
    """conftest's end-of-session check reads the session Ray's worker logs: a deprecation that a file of the
    repository caused is named once (however many workers printed it); one inside the libraries, a user
    warning, a repository-like path elsewhere, and a nested folder's file are not. A job's package copy of the
    repository is named as the repository (tests/integration/test_job_submit.py's head)."""
    from conftest import own_deprecations

    repo = tmp_path / "repo"
    logs = tmp_path / "logs"
    (logs / "ray-data").mkdir(parents=True)
    ours = f"{repo}/c2s/teacher/cache.py:337: DeprecationWarning: columns= on read_parquet is deprecated."
    pydantic = f"{repo}/tests/test_x.py:12: PydanticDeprecatedSince20: The `parse_obj` method is deprecated"
    future = f"{repo}/jobs/train.py:40: FutureWarning: `torch.cuda.amp.autocast(args...)` is deprecated."
    noise = [
        f"{repo}/.venv/lib/python3.11/site-packages/ray/data/context.py:1285: DeprecationWarning: "
        "`use_push_based_shuffle` is deprecated! Configure `shuffle_strategy` instead.",
        f"{repo}/c2s/student/zoo.py:80: UserWarning: a user warning is not a deprecation",
        f"{tmp_path}/repo-old/c2s/x.py:1: DeprecationWarning: another checkout's file",
        "  warnings.warn(",
    ]
    (logs / "worker-aa-01000000-11.err").write_text("\n".join([ours, *noise, pydantic]) + "\n")
    (logs / "worker-bb-01000000-12.err").write_text(f"(pid=12) {ours}\n{future}\n")
    (logs / "ray-data" / "ray-data.log").write_text(f"{repo}/c2s/data/readers.py:5: DeprecationWarning: nested\n")
    assert own_deprecations(logs, repo) == sorted([ours, pydantic, future])
    assert own_deprecations(logs, repo, limit=1) == [ours]
    assert own_deprecations(logs, tmp_path / "elsewhere") == []
    # a job's copy of the repository (Ray's working_dir package) is named as the repository
    checkout = tmp_path / "checkout"
    assert own_deprecations(logs, repo, limit=1, shown_as=checkout) == [
        f"{checkout}/c2s/teacher/cache.py:337: DeprecationWarning: columns= on read_parquet is deprecated."]
