"""``make demo``: the embedded default, end to end on this machine.

Toy world -> toy CLIP (cached) -> a baseline student (no distillation, no latent embeddings) and a C2S
student on a local Ray -> evaluation of both -> a table of sIoU / uIoU / hIoU, the PNG panels, and a
JSON line last: ``{"baseline": {...}, "c2s": {...}, "wall_s": ...}`` (IoUs in percent).

The two students train side by side on the one local Ray (``--sequential``: one after the other). Their
Train workers, data tasks and the teacher actor each run one torch thread (Ray sets OMP_NUM_THREADS from a
fractional CPU request), so alone the baseline keeps one of two cores busy; side by side the C2S run and
its teacher fill the other. The local Ray gets the logical CPUs both runs ask for together.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from c2s.config import load_config

ROWS = (("baseline", "toy_baseline"), ("c2s", "toy_c2s"))


def side_by_side_cpus(configs: Mapping[str, Any]) -> int:
    """Logical CPUs for a local Ray that runs every config's training job at once: the sum of what each
    asks for (workers, teacher actors at the pool's maximum, data tasks), rounded up."""
    from c2s.train.pipeline import needs_teacher
    from c2s.train.resolve import resources_needed

    return math.ceil(sum(resources_needed(cfg, needs_teacher(cfg))["CPU"] for cfg in configs.values()) - 1e-9)


def run_side_by_side(jobs: Mapping[str, Callable[[], dict]], abort: Callable[[], None]) -> dict[str, dict]:
    """Run every job in its own thread; ``{name: result}`` once all have finished.

    When one raises, ``abort`` is called (the demo shuts Ray down, which ends the other runs' ``fit()``) and
    the first error is raised, instead of waiting for the other runs to finish first.
    """
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="c2s-demo") as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
        failed = [f for f in futures.values() if f in done and f.exception() is not None]
        if failed:
            abort()
            raise failed[0].exception()
        return {name: future.result() for name, future in futures.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="c2s demo", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to both runs (e.g. train.seed=1)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/demo-<time>)")
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the local Ray (default: "
                        "what the runs ask for together, 3 for the toy configs; 2 with --sequential)")
    parser.add_argument("--sequential", action="store_true", help="train the baseline, then the C2S student "
                        "(default: side by side)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = (args.out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    import ray

    from c2s.train.resolve import resolve_inputs
    from c2s.train.trainer import init_ray, run_training

    print("[demo] 1/4 toy world, toy CLIP and toy student backbone (generated once, then cached)", flush=True)
    configs = {name: load_config(config, args.overrides) for name, config in ROWS}
    for cfg in configs.values():
        resolve_inputs(cfg)
    if args.sequential:
        init_ray(num_cpus=args.num_cpus or 2)
        results = {}
        for i, (name, _) in enumerate(ROWS, start=2):
            print(f"[demo] {i}/4 training the {name} student", flush=True)
            results[name] = run_training(configs[name], out / name)
    else:
        num_cpus = args.num_cpus or side_by_side_cpus(configs)
        init_ray(num_cpus=num_cpus)
        print(f"[demo] 2-3/4 training the {' and the '.join(name for name, _ in ROWS)} students side by side "
              f"(local Ray with {num_cpus} logical CPUs; lines start with the run's name)", flush=True)
        results = run_side_by_side({name: (lambda name=name: run_training(configs[name], out / name))
                                    for name, _ in ROWS}, abort=ray.shutdown)
    print("[demo] 4/4 results (validation split of the toy world; * unseen classes never labelled)\n", flush=True)
    print(f"{'model':<10} {'sIoU':>6} {'uIoU':>6} {'hIoU':>6}")
    for name, _ in ROWS:
        r = results[name]
        print(f"{name:<10} {r['sIoU']:6.1f} {r['uIoU']:6.1f} {r['hIoU']:6.1f}")
    print(f"\nruns, checkpoints and metrics: {out}")
    for name, _ in ROWS:
        print(f"panels ({name}): {out / name / 'final' / 'panels.png'}")
    summary = {name: {k: round(results[name][k], 2) for k in ("sIoU", "uIoU", "hIoU")} for name, _ in ROWS}
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
