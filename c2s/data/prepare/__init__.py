"""``c2s data prepare {voc12,coco_stuff164k,context59}``: the paper's benchmarks in mmsegmentation's layout,
straight from the archives users download (nothing is extracted to disk first).

    c2s data prepare voc12 --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out data/VOC2012
    c2s data prepare coco_stuff164k --images train2017.zip val2017.zip \\
        --annotations stuffthingmaps_trainval2017.zip --out data/coco_stuff164k
    c2s data prepare context59 --voc VOCtrainval_03-May-2010.tar --annotations trainval_merged.json \\
        --out data/VOC2010

Conversions run in a process pool (``--workers``), with a progress line on stderr every few seconds. An
interrupted run continues where it stopped when run again; a finished one says so and does nothing
(:mod:`c2s.data.prepare.common`). The output is what ``c2s data check OUT --dataset NAME`` accepts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from pathlib import Path

from c2s.data.prepare.common import (
    Pool,
    PrepareError,
    Progress,
    check_inputs,
    default_workers,
    finished_manifest,
    start_output,
    write_manifest,
)

# dataset -> (module, [(flag, nargs, help)])
CONVERTERS = {
    "voc12": ("c2s.data.prepare.voc12", [("--voc", None, "VOCtrainval_11-May-2012.tar"),
                                         ("--sbd", None, "SBD's benchmark.tgz")]),
    "coco_stuff164k": ("c2s.data.prepare.coco_stuff", [("--images", "+", "train2017.zip val2017.zip"),
                                                        ("--annotations", None, "stuffthingmaps_trainval2017.zip")]),
    "context59": ("c2s.data.prepare.context59", [("--voc", None, "VOCtrainval_03-May-2010.tar"),
                                                 ("--annotations", None, "trainval_merged.json (PASCAL in Detail)")]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c2s data prepare", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{" + ",".join(CONVERTERS) + "}")
    for name, (_, flags) in CONVERTERS.items():
        p = sub.add_parser(name, help=f"from {' + '.join(h.split(' (')[0] for _, _, h in flags)}")
        for flag, nargs, text in flags:
            p.add_argument(flag, type=Path, required=True, nargs=nargs, help=text)
        p.add_argument("--out", type=Path, required=True, help="the dataset root to write (mmseg's data_root)")
        p.add_argument("--workers", type=int, default=default_workers(),
                       help="conversion processes; 1 = none, all in the reading process (default: %(default)s, "
                             "the usable CPUs but one)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def inputs_of(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    paths, flags = [], []
    for flag, _, _ in CONVERTERS[args.dataset][1]:
        value = getattr(args, flag[2:])
        for p in value if isinstance(value, list) else [value]:
            paths.append(p)
            flags.append(flag)
    return paths, flags


def run(args: argparse.Namespace) -> dict[str, object]:
    """Prepare one dataset; returns its manifest counts. Raises PrepareError on bad input."""
    out: Path = args.out
    inputs, flags = inputs_of(args)
    check_inputs(inputs, flags)

    def log(msg: str) -> None:
        print(msg, flush=True)

    done = finished_manifest(out, args.dataset, inputs)
    if done is not None:
        log(f"{args.dataset}: {out} is already prepared ({done['finished']}; {out / '.c2s-prepare.json'}); "
            "nothing to do")
        log("  " + ", ".join(f"{k} {v}" for k, v in done["counts"].items()))
        return done["counts"]
    start_output(out)
    counts: Counter[str] = Counter()
    progress = Progress(f"{args.dataset}: files written", quiet=args.quiet)

    def on_done(kind: str) -> None:
        counts["written"] += 1
        progress.advance()

    module = importlib.import_module(CONVERTERS[args.dataset][0])
    log(f"{args.dataset}: preparing {out} from {', '.join(p.name for p in inputs)} ({args.workers} worker(s))")
    with Pool(args.workers, on_done) as pool:
        summary = module.prepare(args, out, pool, counts, log)
    progress.close()
    log(f"  files written {counts['written']}, already there from an earlier run {counts['already there']}")
    write_manifest(out, args.dataset, inputs, summary)
    log(f"done. Next: c2s data check {out} --dataset {args.dataset}")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print(f"c2s data prepare {args.dataset}: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        run(args)
    except PrepareError as err:
        print(f"c2s data prepare {args.dataset}: error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0
