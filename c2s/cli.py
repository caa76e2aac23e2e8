"""The ``c2s`` command: a routing table to each tool's own ``main(argv) -> int``.

Each command's module parses its own arguments, so ``c2s <command> --help`` shows them.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

# command words -> (module, help). The module's ``main(argv: list[str]) -> int`` does the work.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("c2s.demo", "the embedded default: toy world, toy CLIP, baseline vs C2S, table + JSON line"),
    ("train",): ("c2s.train.trainer", "train a student (local Ray, or the cluster's when connected)"),
    ("eval",): ("c2s.evaluate", "evaluate a checkpoint: sIoU / uIoU / hIoU, per-class IoU, panels"),
    ("predict",): ("c2s.predict", "segment your images into any class names: label/overlay PNGs + JSON"),
    ("export",): ("c2s.export", "export the student + classifier to ONNX or TorchScript (parity-checked)"),
    ("serve",): ("c2s.serve.run", "serve a run over HTTP (Ray Serve): batched endpoint + web page; --write-config"),
    ("sweep",): ("c2s.sweep.run", "run a Ray Tune sweep from a spec under sweeps/"),
    ("report",): ("c2s.sweep.book", "paper-shaped tables and plots from a sweep directory; --collect, --book: "
                                    "the results book (docs/results.md)"),
    ("tokens",): ("c2s.teacher.cache", "materialise the teacher's tokens to a Parquet cache"),
    ("data", "check"): ("c2s.data.check", "validate a dataset folder against the catalog"),
    ("data", "prepare"): ("c2s.data.prepare", "VOC12-aug / COCO-Stuff164k / Context59 from the downloaded archives"),
    ("world", "generate"): ("c2s.world.generate", "generate the toy world in mmseg layout"),
    ("world", "pretrain-teacher"): ("c2s.world.clip", "pretrain the toy CLIP on the toy world"),
    ("world", "pretrain-student"): ("c2s.world.backbone",
                                    "pretrain a toy student's backbone on seen-class crops (the ImageNet analogue)"),
    ("bench", "objective"): ("c2s.bench.objective", "time the student alone vs with the C2S objective"),
    ("bench", "teacher"): ("c2s.bench.teacher", "time the teacher's stages and local-token batching"),
    ("bench", "sweep-cache"): ("c2s.bench.sweep_cache", "a 4-trial toy sweep with and without the token cache"),
    ("bench", "flops"): ("c2s.bench.flops", "params and GFLOPs of the full-size students at 512x512 vs Table 2"),
    ("bench", "inference"): ("c2s.bench.inference", "Table 2: students alone vs CLIP-at-inference, params/GFLOPs/img/s"),
    ("bench", "serve"): ("c2s.bench.serve", "c2s serve under load on a toy run: batching on vs off, latency + img/s"),
}


# Errors about what the user passed (a config key, a path, a weights file): their message names the key, the
# value and what was expected, so the console shows it alone; `--debug` shows the traceback as well. Named
# by module path so this routing table imports nothing heavy.
USER_ERRORS = frozenset({
    "c2s.config.ConfigError",  # includes c2s.sweep.spec.SpecError
    "c2s.errors.PreflightError",
    "c2s.teacher.checkpoint.TeacherCheckpointError",
    "c2s.train.checkpoint.CheckpointError",  # a damaged or missing training checkpoint (includes NoCheckpointError)
    "c2s.serve.settings.ServeError",  # c2s serve / bench serve: an option out of range, a port taken, a replica failed
})


# Ray's own lines about Ray's own actors that a c2s user cannot act on, measured in a submitted training
# job's log: core_worker.cc's "Actor with class name: 'PreemptionWatcher' (Train) / 'MapWorker(...)' (Data)
# ... has constructor arguments in the object store and max_restarts > 0", and the RayDeprecationWarning
# (two lines) Ray Data raises for an option Train V2's DatasetManager sets itself. Dropped from the driver's
# console with Ray's documented log-deduplication filter (RAY_DEDUP_LOGS_SKIP_REGEX, read when ray is first
# imported: ray/_private/ray_constants.py); the worker log files keep them.
RAY_SKIP_LINES = (r"has constructor arguments in the object store and max_restarts > 0"
                  r"|RayDeprecationWarning: `ExecutionOptions\.exclude_resources` is deprecated"
                  r"|^\s*self\.exclude_resources = exclude_resources\s*$")


def quiet_ray_console() -> None:
    """Set RAY_DEDUP_LOGS_SKIP_REGEX (unless the user set it) before anything imports ray."""
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", RAY_SKIP_LINES)


def is_user_error(err: BaseException) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in USER_ERRORS for cls in type(err).__mro__)


def run_command(prog: str, entry: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a command's ``main(argv)``; a user error prints ``<prog>: error: <message>`` alone and returns 2.

    ``--debug`` anywhere in ``argv`` (removed before ``entry`` sees it) re-raises instead, with the traceback.
    ``c2s`` and the ``jobs/*.py`` entrypoints of ``ray job submit`` both go through here.
    """
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        return int(entry(argv) or 0)
    except Exception as err:
        if debug or not is_user_error(err):
            raise
        message = " ".join(str(err).split())  # one line, whatever the message's own line breaks
        print(f"{prog}: error: {message} (--debug shows the traceback)", file=sys.stderr, flush=True)
        return 2


def _usage() -> str:
    lines = ["usage: c2s <command> [args...] [--debug]", "",
             "--debug: show the traceback of a config/input error, not just its message", "", "commands:"]
    for words, (_, text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<26} {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_ray_console()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    for words, (module_name, _) in sorted(COMMANDS.items(), key=lambda kv: -len(kv[0])):
        if tuple(argv[: len(words)]) == words:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                if err.name != module_name:
                    raise
                print(f"c2s {' '.join(words)}: not built yet ({module_name} does not exist)", file=sys.stderr)
                return 2
            return run_command(f"c2s {' '.join(words)}", module.main, argv[len(words):])
    print(f"c2s: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
