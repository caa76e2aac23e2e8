"""``c2s data check ROOT --dataset NAME|FILE.yaml``: validate a dataset folder before a cluster job uses it.

``--dataset`` takes a catalog name or a dataset YAML file (:mod:`c2s.data.custom`); for a file, a folder or
split file its layout names but ``ROOT`` lacks is an error naming the key (``layout.img_dir.train``).

Per split: lists the pairs exactly as training will (:func:`c2s.data.catalog.list_split`, mmseg's order),
lists unpaired files, DECODES every image and every mask with the training reader
(:func:`c2s.data.readers.decode_pair`: a truncated file fails here as it would in training) and reports
each bad file by path with the reason: files that cannot be decoded, masks whose size differs from their
image, masks with ids outside the catalog. A split whose pair count differs from the benchmark's published
count (e.g. VOC aug 10,582) is a problem too, unless ``--allow-subset`` says the subset is intended.

Exits 1 when anything is wrong, 2 when the folder has none of the catalog's layouts, 0 when clean.
Decoding runs in a process pool (``--workers``, default: the CPUs this process may use) with a progress
line on stderr every couple of seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from c2s.data.catalog import DatasetInfo, dataset_names, get_dataset_info, list_split
from c2s.data.readers import BadSampleError, decode_pair

MAX_LISTED = 20


@dataclass
class SplitReport:
    split: str
    layout: str = "-"
    images: int = 0
    masks: int = 0
    pairs: int = 0
    unpaired: list[str] = field(default_factory=list)
    bad_ids: list[tuple[str, list[int]]] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    missing: str | None = None  # why the split could not be found at all
    expected: int | None = None
    allow_subset: bool = False

    @property
    def count_differs(self) -> bool:
        return self.missing is None and self.expected is not None and self.pairs != self.expected

    @property
    def problems(self) -> int:
        return (len(self.unpaired) + len(self.bad_ids) + len(self.size_mismatch) + len(self.unreadable)
                + (self.missing is not None) + (self.count_differs and not self.allow_subset))


def check_pair(dataset: str, image_path: Path, mask_path: Path) -> tuple[str, object] | None:
    """None if the pair decodes as training would decode it, else ``(kind, detail)``.

    A module-level function of picklable arguments: it runs in the process pool.
    """
    try:
        decode_pair(get_dataset_info(dataset), image_path, mask_path)
    except BadSampleError as err:
        if err.kind == "ids":
            return "ids", (err.path, list(err.ids))
        return ("size" if err.kind == "size" else "unreadable"), str(err)
    return None


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _results(dataset: str, pairs: list[tuple[Path, Path]], workers: int) -> Iterable[tuple[str, object] | None]:
    """check_pair over ``pairs`` in order; a process pool when ``workers > 1`` (PIL's decoders hold the GIL
    for much of the work, so threads do not scale)."""
    if workers <= 1 or len(pairs) < 2:
        yield from (check_pair(dataset, i, m) for i, m in pairs)
        return
    # spawn, not fork: the caller may already run threads (a Ray driver, a progress thread).
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, min(64, len(pairs) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(check_pair, [dataset] * len(pairs), [i for i, _ in pairs], [m for _, m in pairs],
                            chunksize=chunk)


def check_split(info: DatasetInfo, root: Path, split: str, *, workers: int = 1, allow_subset: bool = False,
                progress: Callable[[str], None] | None = None, progress_every_s: float = 2.0) -> SplitReport:
    """Check one split; never raises for data problems (they are collected in the report)."""
    report = SplitReport(split, expected=info.num_train if split == "train" else info.num_val,
                         allow_subset=allow_subset)
    try:
        listing = list_split(info, root, split)
    except FileNotFoundError as err:
        report.missing = str(err).splitlines()[0]
        return report
    v = listing.variant
    assert v is not None
    report.layout = v.describe()
    report.pairs = len(listing.pairs)
    report.images = report.pairs + len(listing.unpaired_images)
    report.masks = report.pairs + len(listing.unpaired_masks)
    report.unpaired = ([f"image without mask: {p}" for p in listing.unpaired_images]
                       + [f"mask without image: {p}" for p in listing.unpaired_masks]
                       + [f"listed but neither image nor mask exists: {n}" for n in listing.missing_listed])
    t0 = last = time.monotonic()
    printed = False
    for done, result in enumerate(_results(info.ref, listing.pairs, workers), 1):
        if result is not None:
            kind, detail = result
            {"unreadable": report.unreadable, "size": report.size_mismatch, "ids": report.bad_ids}[kind].append(detail)
        now = time.monotonic()
        # Long runs only: a line every progress_every_s, and the closing line once any was printed.
        if progress is not None and (now - last >= progress_every_s or (printed and done == report.pairs)):
            last, printed = now, True
            progress(f"{split}: {done}/{report.pairs} pairs decoded ({done / max(now - t0, 1e-9):.0f}/s), "
                     f"{sum(map(len, (report.unreadable, report.size_mismatch, report.bad_ids)))} bad so far")
    return report


def format_report(info: DatasetInfo, root: Path, reports: list[SplitReport]) -> str:
    lines = [f"c2s data check {root} --dataset {info.ref}", ""]
    header = f"{'split':<6} {'images':>7} {'masks':>7} {'pairs':>7} {'unpaired':>8} {'bad ids':>7} " \
             f"{'size':>5} {'unread':>6}  layout"
    lines.append(header)
    lines.append("-" * len(header))
    for r in reports:
        if r.missing:
            lines.append(f"{r.split:<6} {'-':>7} {'-':>7} {'-':>7} {'-':>8} {'-':>7} {'-':>5} {'-':>6}  MISSING")
            continue
        lines.append(f"{r.split:<6} {r.images:>7} {r.masks:>7} {r.pairs:>7} {len(r.unpaired):>8} "
                     f"{len(r.bad_ids):>7} {len(r.size_mismatch):>5} {len(r.unreadable):>6}  {r.layout}")
    for r in reports:
        if r.missing:
            lines += ["", f"[{r.split}] {r.missing}"]
        if r.count_differs:
            if r.allow_subset:
                lines += ["", f"[{r.split}] {r.pairs} pairs; the benchmark has {r.expected} "
                              "(accepted: --allow-subset)"]
            else:
                lines += ["", f"[{r.split}] {r.pairs} pairs, but the {info.name} benchmark's {r.split} split has "
                              f"{r.expected}: results would not be comparable with the paper. Fix the layout "
                              "(see the layouts below), or pass --allow-subset if a subset is intended.",
                          info.layout.describe()]
        for title, items in (("unpaired files", r.unpaired), ("masks of a different size than their image",
                                                                r.size_mismatch), ("files that cannot be decoded",
                                                                                   r.unreadable)):
            if items:
                lines += ["", f"[{r.split}] {title}: {len(items)}"]
                lines += [f"  {x}" for x in items[:MAX_LISTED]]
                if len(items) > MAX_LISTED:
                    lines.append(f"  ... and {len(items) - MAX_LISTED} more")
        if r.bad_ids:
            valid = info.valid_raw_ids
            lines += ["", f"[{r.split}] masks with ids outside the {info.name} catalog "
                          f"(valid: {int(valid.min())}..{int(valid[valid != 255].max())} and 255): {len(r.bad_ids)}"]
            lines += [f"  {path}: ids {ids}" for path, ids in r.bad_ids[:MAX_LISTED]]
            if len(r.bad_ids) > MAX_LISTED:
                lines.append(f"  ... and {len(r.bad_ids) - MAX_LISTED} more")
    total = sum(r.problems for r in reports)
    lines += ["", f"{total} problem(s) found." if total else "OK: no problems found."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2s data check", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="dataset folder (mmseg layout)")
    parser.add_argument("--dataset", required=True,
                        help=f"catalog name ({', '.join(dataset_names())}) or a dataset .yaml file (docs/datasets.md)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes decoding images and masks (default: %(default)s, the usable CPUs)")
    parser.add_argument("--allow-subset", action="store_true",
                        help="accept a split whose pair count differs from the benchmark's published count")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    try:
        info = get_dataset_info(args.dataset)
    except ValueError as err:
        print(f"c2s data check: {err}", file=sys.stderr)
        return 2
    if not args.root.is_dir():
        print(f"c2s data check: {args.root} is not a folder", file=sys.stderr)
        return 2
    if info.source is not None:
        from c2s.data.custom import check_folders

        try:
            check_folders(info, args.root, tuple(args.splits))
        except ValueError as err:
            print(f"c2s data check: {err}", file=sys.stderr)
            return 2

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    reports = [check_split(info, args.root, s, workers=args.workers, allow_subset=args.allow_subset,
                           progress=None if args.quiet else progress) for s in args.splits]
    print(format_report(info, args.root, reports))
    if all(r.missing for r in reports):
        print(f"\n{args.root} has none of the layouts {info.name} expects:\n{info.layout.describe()}")
        return 2
    return 1 if any(r.problems for r in reports) else 0
