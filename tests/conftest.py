"""Shared fixtures. Unit tests need no Ray; integration tests share one local Ray (num_cpus=2)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from joblog import CRASH
from units_lane import UnitsLane

# The session's own cache root (toy world, token caches, text embeddings), set before any Ray process starts
# so every worker inherits it: a clean-clone `make test` once wrote a token cache and a toy world into the
# user's ~/.cache/c2s. Tests that need an empty one still take the `cache_root` fixture.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="c2s-test-cache-"))


def pytest_configure(config):
    os.environ["C2S_CACHE"] = str(SESSION_CACHE)
    if config.getoption("units_lane"):
        config.pluginmanager.register(UnitsLane(config, _lane_items), "c2s-units-lane")


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)
    running = getattr(sys.modules.get("multinode_cluster"), "RUNNING", None)
    if running is not None:  # a session that ended before its multinode tests (-x, Ctrl-C): stop the cluster
        running.stop()


REPO = Path(__file__).resolve().parents[1]
# Python hides deprecations outside __main__ by default, so in Ray's workers they were never seen. The session's
# Ray shows them in its log files, and its teardown names those that a file of this repository caused.
WORKER_PYTHONWARNINGS = "default::DeprecationWarning,default::PendingDeprecationWarning,default::FutureWarning"
# What Python's warnings.formatwarning writes: "<file>:<line>: <Category>: <message>".
WARNING_LINE = re.compile(r"(?P<file>/\S+?\.py):(?P<line>\d+): (?P<category>\w+): (?P<message>.*)")


class RayWorkerDeprecation(UserWarning):
    """A deprecation that c2s's code, a job or a test caused in a process of a Ray the suite started (the
    session's, the job-submit head's, the multi-node scenarios' cluster and driver), where pytest sees none."""


def warn_deprecations(where: str, lines: list[str]) -> None:
    """Each of ``lines`` (own_deprecations') as a RayWorkerDeprecation of the session, ``in <where>: <line>``."""
    for line in lines:
        warnings.warn(f"in {where}: {line}", RayWorkerDeprecation, stacklevel=2)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session, 2 CPUs like CI; shut down at the end. Its workers show deprecations
    (WORKER_PYTHONWARNINGS); at the end, those caused by this repository's files become warnings of the session."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        # address="local": always a Ray of its own. Without it ray.init joins whatever Ray this machine runs
        # (a `ray start` head, the multinode scenarios' Cluster: /tmp/ray/ray_current_cluster) and then
        # refuses num_cpus ("When connecting to an existing cluster, num_cpus and num_gpus must not be
        # provided"): every integration test errored while a developer's `ray start` head was up.
        # PYTHONWARNINGS only for the processes ray.init starts (the raylet, whose workers inherit it): the
        # subprocesses tests start later (`python jobs/train.py`, a `ray start` head) keep the user's environment
        # (the job-submit test's jobs and the multi-node scenarios' process are given it where they start).
        saved = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = WORKER_PYTHONWARNINGS
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        finally:
            if saved is None:
                del os.environ["PYTHONWARNINGS"]
            else:
                os.environ["PYTHONWARNINGS"] = saved
    node = ray._private.worker._global_node  # None only for a Ray reached through Ray Client: no local logs
    logs_dir = Path(node.get_logs_dir_path()) if node is not None else None
    yield ray
    ray.shutdown()
    if logs_dir is not None:
        warn_deprecations("a Ray worker", own_deprecations(logs_dir, REPO))


def own_deprecations(logs_dir: Path, repo: Path, limit: int = 20, shown_as: Path | None = None) -> list[str]:
    """The deprecation warnings (a category naming one, or FutureWarning) in the log files directly under
    ``logs_dir`` (a Ray session's, or a driver's output) that point at a file of ``repo`` outside its
    ``.venv``: each distinct line once, sorted, at most ``limit``. Those pointing into the libraries (Ray's
    own settings, Ray Serve's pydantic fields) are not ours to mend. ``shown_as``: the folder to name instead
    of ``repo`` (a job's copy of the repository in Ray's package folder is named as the repository itself)."""
    root, venv = f"{repo}/", f"{repo / '.venv'}/"
    found: set[str] = set()
    for _, text in ray_log_texts(logs_dir):
        for line in text.splitlines():
            match = WARNING_LINE.search(line)
            if (match and ("Deprecat" in match["category"] or match["category"] == "FutureWarning")
                    and match["file"].startswith(root) and not match["file"].startswith(venv)):
                found.add(match.group(0).strip())
    if shown_as is not None:
        found = {f"{shown_as}/{line.removeprefix(root)}" for line in found}
    return sorted(found)[:limit]


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    """An empty cache root, so tests never touch the user's ~/.cache/c2s."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("C2S_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def mmseg_build():
    """``build(config, root, split)``: (img, seg_map, reduce_zero_label) as mmseg 1.2.2's own dataset config
    (``.mim/configs/_base_/datasets/<config>``) lists ``root``."""
    import c2s.compat

    c2s.compat.install()
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    configs = Path(mmseg.__file__).parent / ".mim" / "configs" / "_base_" / "datasets"

    def build(config: str, root: Path, split: str) -> list[tuple[Path, Path, bool]]:
        cfg = Config.fromfile(str(configs / config))
        dcfg = (cfg.train_dataloader if split == "train" else cfg.val_dataloader).dataset
        for sub in dcfg.get("datasets", [dcfg]):
            sub.data_root, sub.pipeline = str(root), []
        with DefaultScope.overwrite_default_scope("mmseg"):  # ConcatDataset builds its parts in mmseg's scope
            ds = DATASETS.build(dcfg)
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        return [(Path(d["img_path"]), Path(d["seg_map_path"]), d["reduce_zero_label"]) for d in infos]

    return build


RAY_MARKERS = ("integration", "multinode", "gpu")  # gpu: tests/test_gpu.py trains on Ray


def _uses_ray(item: pytest.Item) -> bool:
    return (any(item.get_closest_marker(m) for m in RAY_MARKERS)
            or "ray_local" in getattr(item, "fixturenames", ()))


def _starts_no_ray(item: pytest.Item) -> bool:
    """The first group's tests: no Ray, and none marked slow."""
    return not _uses_ray(item) and item.get_closest_marker("slow") is None


def _modules_where(items: list[pytest.Item], every: Callable[[pytest.Item], bool]) -> set:
    """The paths of the modules all of whose tests satisfy ``every``."""
    modules: dict[object, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    return {path for path, tests in modules.items() if all(every(t) for t in tests)}


def _lane_items(items: list[pytest.Item]) -> list[pytest.Item]:
    """``--units-lane``'s share: every module that starts no Ray, the slow ones (a torch.compile, the ONNX
    export) included, so that the lane's CPU-bound work all runs in the Ray tests' idle time."""
    lane = _modules_where(items, lambda item: not _uses_ray(item))
    return [item for item in items if item.path in lane]


def pytest_collection_modifyitems(config, items):
    """Order: the modules whose tests all start no Ray, then the simulated-cluster scenarios (marker
    multinode), then every other module, each in file order (a stable sort; no module is split, so no
    module fixture is built twice).

    The scenarios run in a subprocess started when collection ends (pytest_collection_finish), beside the
    first group: their cluster waits on process starts and node-death timeouts for minutes while the unit
    tests use the CPU. They still finish before the session's own Ray starts: in a clean-clone `make test`
    they took 329 s after the other integration tests had run, against 241 s run alone. With
    ``--units-lane`` (``make test``) every module that starts no Ray, the first group and the slow Ray-free
    ones, runs in a niced process of its own instead (tests/units_lane.py)."""
    ray_free = _modules_where(items, _starts_no_ray)

    def group(item: pytest.Item) -> int:
        if item.get_closest_marker("multinode") is not None:
            return 1
        return 0 if item.path in ray_free else 2

    items.sort(key=group)


def pytest_addoption(parser):
    parser.addoption("--units-lane", action="store_true",
                     help="c2s: run the modules that start no Ray in a second pytest process at nice 19, beside "
                          "the Ray tests (tests/units_lane.py; make test passes it)")


def pytest_collection_finish(session):
    """Start the multinode scenarios now, when the session has any (tests/multinode/multinode_cluster.py's
    Scenarios; its module fixture waits for them)."""
    if session.config.option.collectonly or not any(i.get_closest_marker("multinode") for i in session.items):
        return
    import multinode_cluster  # on sys.path: pytest put tests/multinode there to import its test module

    work = Path.home() / ".cache" / "c2s-multinode-tests" / uuid.uuid4().hex[:12]  # not node-local /tmp
    multinode_cluster.RUNNING = multinode_cluster.Scenarios(Path(tempfile.mkdtemp(prefix="c2s-multinode-")), work)


def pytest_terminal_summary(terminalreporter):
    """Where the multinode scenarios' time went: they run beside the unit tests, so pytest's durations show
    only the wait for them."""
    running = getattr(sys.modules.get("multinode_cluster"), "RUNNING", None)
    if running is not None and running.timing:
        terminalreporter.write_line("[multinode] scenarios (s): " + ", ".join(f"{k} {v}" for k, v in running.timing.items()))


def ray_log_texts(logs_dir: Path, since: float = 0.0) -> Iterator[tuple[str, str]]:
    """(name, text) of each Ray log file directly under ``logs_dir``, in name order, last written at or after
    ``since`` (a time.time()); files over 50 MB and files gone meanwhile are skipped."""
    for path in sorted(logs_dir.glob("*")):
        try:
            if not path.is_file() or path.stat().st_mtime < since or path.stat().st_size > 50_000_000:
                continue
            text = path.read_text(errors="replace")
        except OSError:  # rotated or removed meanwhile
            continue
        yield path.name, text


def ray_crash_lines(logs_dir: Path, since: float, limit: int = 8) -> list[str]:
    """Crash lines (tests/joblog.py's CRASH: a fatal signal, a failed check) in the Ray log files under
    ``logs_dir`` written since ``since`` (a time.time()), each prefixed with its file's name."""
    found: list[str] = []
    for name, text in ray_log_texts(logs_dir, since):
        found += [f"{name}: {line.strip()}" for line in text.splitlines() if CRASH.search(line)]
        if len(found) >= limit:
            break
    return found[:limit]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran on the session's Ray says so when a Ray process crashed meanwhile (its log
    files hold a fatal-signal dump or a failed check): the failure is then Ray's, not necessarily c2s's."""
    report = yield
    if call.when == "setup":
        item.stash[_STARTED] = time.time()
    if report.failed and "ray_local" in getattr(item, "fixturenames", ()):
        import ray

        node = getattr(ray._private.worker, "_global_node", None)
        if node is not None:
            lines = ray_crash_lines(Path(node.get_logs_dir_path()), item.stash.get(_STARTED, 0.0))
            if lines:
                report.sections.append(("Ray process crash during this test (not c2s's own output)",
                                        "\n".join(lines)))
    return report


_STARTED = pytest.StashKey[float]()
