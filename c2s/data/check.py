"""``c2s data check ROOT --dataset NAME``: validate a dataset folder before a cluster job uses it.

Per split: counts images and masks, lists unpaired files, decodes every mask and reports ids outside the
catalog (file names and the offending ids, first 20 files), masks whose size differs from their image,
and files that cannot be read. Prints a summary table; exits 1 when anything is wrong, 2 when the folder
has none of the catalog's layouts, 0 when clean. Streams file by file (a thread pool decodes masks) with
a progress line on stderr every couple of seconds for large folders.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from c2s.data.catalog import DATASETS, DatasetInfo, get_dataset_info, list_split

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

    @property
    def problems(self) -> int:
        return (len(self.unpaired) + len(self.bad_ids) + len(self.size_mismatch) + len(self.unreadable)
                + (self.missing is not None))


def _check_pair(info: DatasetInfo, image_path: Path, mask_path: Path) -> tuple[str, object] | None:
    """None if fine, else (kind, detail). Reads the image header only and decodes the mask."""
    try:
        with Image.open(image_path) as im:
            img_size = im.size
    except (OSError, UnidentifiedImageError) as err:
        return "unreadable", f"{image_path}: {err}"
    try:
        with Image.open(mask_path) as lm:
            mask = np.asarray(lm if lm.mode in ("L", "P", "I", "I;16") else lm.convert("L"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        return "unreadable", f"{mask_path}: {err}"
    if (mask.shape[1], mask.shape[0]) != img_size:
        return "size", (f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but {image_path} is "
                        f"{img_size[0]}x{img_size[1]}")
    bad = info.invalid_raw_ids(mask)
    if bad.size:
        return "ids", (str(mask_path), [int(v) for v in bad])
    return None


def check_split(info: DatasetInfo, root: Path, split: str, *, workers: int = 4,
                progress: Callable[[str], None] | None = None, progress_every_s: float = 2.0) -> SplitReport:
    """Check one split; never raises for data problems (they are collected in the report)."""
    report = SplitReport(split, expected=info.num_train if split == "train" else info.num_val)
    try:
        listing = list_split(info, root, split)
    except FileNotFoundError as err:
        report.missing = str(err).splitlines()[0]
        return report
    v = listing.variant
    assert v is not None
    report.layout = f"{v.img_dir} + {v.ann_dir}" + (f" ({v.split_file})" if v.split_file else "")
    report.pairs = len(listing.pairs)
    report.images = report.pairs + len(listing.unpaired_images)
    report.masks = report.pairs + len(listing.unpaired_masks)
    report.unpaired = ([f"image without mask: {p}" for p in listing.unpaired_images]
                       + [f"mask without image: {p}" for p in listing.unpaired_masks]
                       + [f"listed in {v.split_file} but neither file exists: {n}" for n in listing.missing_listed])
    t0 = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # PIL releases the GIL while decoding, so threads overlap the PNG work; map keeps file order.
        results: Iterable = pool.map(lambda pair: _check_pair(info, *pair), listing.pairs)
        for done, result in enumerate(results, 1):
            if result is not None:
                kind, detail = result
                {"unreadable": report.unreadable, "size": report.size_mismatch, "ids": report.bad_ids}[kind].append(detail)
            now = time.monotonic()
            if progress is not None and now - last >= progress_every_s:
                last = now
                progress(f"{split}: {done}/{report.pairs} masks checked ({done / (now - t0):.0f}/s)")
    return report


def format_report(info: DatasetInfo, root: Path, reports: list[SplitReport]) -> str:
    lines = [f"c2s data check {root} --dataset {info.name}", ""]
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
        if r.expected is not None and not r.missing and r.pairs != r.expected:
            lines += ["", f"[{r.split}] note: {r.pairs} pairs; the benchmark has {r.expected} "
                          f"(fine for a subset, wrong for a paper run)"]
        for title, items in (("unpaired files", r.unpaired), ("masks of a different size than their image",
                                                                r.size_mismatch), ("unreadable files", r.unreadable)):
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
    parser.add_argument("--dataset", required=True, help=f"catalog name: {', '.join(DATASETS)}")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--workers", type=int, default=4, help="threads decoding masks")
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

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    reports = [check_split(info, args.root, s, workers=args.workers, progress=None if args.quiet else progress)
               for s in args.splits]
    print(format_report(info, args.root, reports))
    if all(r.missing for r in reports):
        print(f"\n{args.root} has none of the layouts {info.name} expects:\n{info.layout.describe()}")
        return 2
    return 1 if any(r.problems for r in reports) else 0
