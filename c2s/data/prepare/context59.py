"""``c2s data prepare context59 --voc VOCtrainval_03-May-2010.tar --annotations trainval_merged.json --out DIR``.

Writes mmseg's PASCAL Context root (``DIR`` = mmseg's ``data_root='data/VOCdevkit/VOC2010/'``;
``configs/_base_/datasets/pascal_context_59.py``, ``PascalContextDataset59``: ``reduce_zero_label=True``) as
mmseg's ``tools/dataset_converters/pascal_context.py`` makes it, without the ``detail`` package (its
``Detail`` class is read here from its source, PASCAL in Detail API ``PythonAPI/detail/__init__.py``):

- ``JPEGImages/*.jpg``: copied from the VOC 2010 tar (members ``VOCdevkit/VOC2010/JPEGImages/*.jpg``);
- ``SegmentationClassContext/<name>.png``: for each image of phase ``train`` / ``val`` in the JSON
  (``images[]``: ``image_id``, ``file_name``, ``height``, ``width``, ``phase``), ``Detail.getMask(img)``: a zero
  mask painted with ``category_id`` by every ``annos_segmentation[]`` entry of that image, in file order (a
  later one overwrites), each ``segmentation`` a COCO RLE ``{size: [h, w], counts}``; then the converter's
  ``_class_to_index``: every value must be one of the 60 ids of ``_mapping`` (0 = background and the 59
  classes) and becomes its index in the sorted ``_mapping`` (0..59), saved as an 8-bit PNG;
- ``ImageSets/SegmentationContext/{train,val}.txt``: the converted names of each phase, sorted.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from c2s.data.prepare.common import PrepareError, write_bytes, write_lines, write_png

NUM_TRAIN, NUM_VAL = 4996, 5104
# pascal_context.py's _mapping (np.sort of these 60 Detail category ids); index in it = the mask value.
MAPPING = tuple(sorted((
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295,
    296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347,
    220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115)))
JPEG = re.compile(r"(?:^|/)VOC2010/JPEGImages/([^/]+\.jpg)$")
CTX = "ImageSets/SegmentationContext"


def rle_counts(counts: str | list[int]) -> list[int]:
    """COCO RLE run lengths from the compressed string of maskApi.c's ``rleToString`` (6 bits a char, chars
    48..111, each count after the second stored as the difference to the one two before), as its
    ``rleFrString`` reads them; a list is already uncompressed."""
    if isinstance(counts, list):
        return [int(c) for c in counts]
    out: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def decode_rle(rle: dict, where: str) -> np.ndarray:
    """A COCO RLE ``{size: [h, w], counts}`` -> bool (h, w) mask (runs alternate 0/1 from 0, column-major)."""
    h, w = (int(v) for v in rle["size"])
    runs = np.asarray(rle_counts(rle["counts"]), np.int64)
    if runs.sum() != h * w or (runs < 0).any():
        raise PrepareError(f"{where}: RLE runs cover {int(runs.sum())} pixels, the mask has {h}x{w} = {h * w}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape(w, h).T


def render_mask(out: str, height: int, width: int, anns: list[tuple[int, dict]], final: str, where: str) -> str:
    """Pool task: Detail.getMask + pascal_context.py's _class_to_index for one image, saved as PNG."""
    mask = np.zeros((height, width), np.int64)
    for category_id, rle in anns:
        m = decode_rle(rle, where)
        if m.shape != mask.shape:
            raise PrepareError(f"{where}: an annotation of size {m.shape} on an image of size {mask.shape}")
        mask[m] = category_id
    values = np.unique(mask)
    bad = sorted(set(values.tolist()) - set(MAPPING))
    if bad:
        raise PrepareError(f"{where}: category ids {bad} are not among the 59 classes + background of "
                           "pascal_context.py's _mapping")
    index = np.searchsorted(np.asarray(MAPPING), mask)  # = np.digitize(mask, _mapping, right=True) on these
    write_png(Path(out), Path(final), index.astype(np.uint8))
    return final


def _copy(out: str, data: bytes, final: str) -> str:
    write_bytes(Path(out), Path(final), data)
    return final


def load_annotations(path: Path) -> tuple[dict[str, list[dict]], dict[int, list[tuple[int, dict]]]]:
    """(images by phase, annotations by image id in file order) from trainval_merged.json."""
    try:
        data = json.loads(path.read_text())
        images = data["images"]
        segs = data["annos_segmentation"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise PrepareError(f"--annotations {path}: not a PASCAL in Detail JSON with 'images' and "
                           f"'annos_segmentation' ({type(err).__name__}: {err})") from err
    by_phase: dict[str, list[dict]] = defaultdict(list)
    for img in images:
        by_phase[img.get("phase")].append(img)
    anns: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for seg in segs:
        anns[seg["image_id"]].append((int(seg["category_id"]), seg["segmentation"]))
    return by_phase, anns


def prepare(args, out: Path, pool, counts, log) -> dict[str, object]:
    from c2s.data.prepare.common import tar_members

    jpegs = 0
    for name, read in tar_members(args.voc, "context59", quiet=args.quiet):
        if not (m := JPEG.search(name)):
            continue
        jpegs += 1
        final = out / "JPEGImages" / m.group(1)
        if final.exists():
            counts["already there"] += 1
        else:
            pool.here(_copy, str(out), read(), str(final))
    if not jpegs:
        raise PrepareError(f"--voc {args.voc}: no VOCdevkit/VOC2010/JPEGImages/*.jpg members "
                           "(expected VOCtrainval_03-May-2010.tar)")
    by_phase, anns = load_annotations(args.annotations)
    summary: dict[str, object] = {"JPEGImages": jpegs}
    for phase in ("train", "val"):
        names = []
        for img in by_phase.get(phase, []):
            file_name = img["file_name"]
            names.append(Path(file_name).stem)
            final = out / "SegmentationClassContext" / file_name.replace("jpg", "png")
            if final.exists():
                counts["already there"] += 1
                continue
            pool.submit(render_mask, str(out), int(img["height"]), int(img["width"]), anns.get(img["image_id"], []),
                        str(final), f"{args.annotations.name}: image {img['image_id']} ({file_name})")
        write_lines(out, out / CTX / f"{phase}.txt", sorted(names))
        summary[f"{phase}.txt"] = len(names)
    pool.drain()
    missing = [n for phase in ("train", "val") for n in (out / CTX / f"{phase}.txt").read_text().split()
               if not (out / "JPEGImages" / f"{n}.jpg").is_file()]
    if missing:
        raise PrepareError(f"{len(missing)} images of the JSON are not in --voc {args.voc.name}, e.g. {missing[:5]}; "
                           "expected the VOC 2010 trainval tar")
    log(f"  JPEGImages {jpegs}; SegmentationClassContext {summary['train.txt'] + summary['val.txt']} masks "
        "(0 = background, 1..59 = the classes)")
    log(f"  {CTX}: train.txt {summary['train.txt']}, val.txt {summary['val.txt']}"
        + ("" if (summary["train.txt"], summary["val.txt"]) == (NUM_TRAIN, NUM_VAL)
           else f" (the full PASCAL Context has {NUM_TRAIN} / {NUM_VAL}: a partial JSON?)"))
    return summary
