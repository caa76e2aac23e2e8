"""``c2s data prepare coco_stuff164k --images train2017.zip val2017.zip --annotations
stuffthingmaps_trainval2017.zip --out DIR``.

Writes mmseg's COCO-Stuff 164k root (``configs/_base_/datasets/coco-stuff164k.py``, ``COCOStuffDataset``:
``*.jpg`` + ``*_labelTrainIds.png``, ``reduce_zero_label=False``) as mmseg's documented steps make it (unzip the
images under ``images/``, the stuffthingmaps under ``annotations/``, then
``tools/dataset_converters/coco_stuff164k.py``):

- ``images/{train2017,val2017}/*.jpg``: copied from the image zips (members ``train2017/*.jpg``, ``val2017/*.jpg``);
- ``annotations/{train2017,val2017}/<id>_labelTrainIds.png``: each stuffthingmap (``train2017/<id>.png``: 0..181
  = COCO-Stuff label id - 1, 255 = unlabelled) mapped by the converter's ``clsID_to_trID`` to 171 train ids
  (the 11 COCO thing ids that were never annotated are skipped; 255 stays 255). The original ``<id>.png``
  files mmseg leaves beside them are not written: mmseg's dataset only lists ``*_labelTrainIds.png``.

A map value outside ``clsID_to_trID`` (mmseg's converter would leave it unchanged, i.e. as another class's
train id) is an error naming the file.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from c2s.data.prepare.common import PrepareError, copy_zip_member, write_png, zip_names, zip_read

COCO_LEN = 123287  # coco_stuff164k.py: 118,287 train + 5,000 val
# stuffthingmaps values that are no class: COCO thing category ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91
# (street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush) minus 1 --
# exactly the keys missing from coco_stuff164k.py's clsID_to_trID.
UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
CLS_TO_TRAIN = {c: t for t, c in enumerate(c for c in range(182) if c not in UNUSED_IDS)} | {255: 255}
_LUT = np.full(256, 255, np.uint8)
_VALID = np.zeros(256, bool)
for _c, _t in CLS_TO_TRAIN.items():
    _LUT[_c], _VALID[_c] = _t, True

IMAGE = re.compile(r"(?:^|/)(train2017|val2017)/([^/]+)\.jpg$")
STUFF = re.compile(r"(?:^|/)(train2017|val2017)/([^/]+)\.png$")


def to_train_ids(mask: np.ndarray, where: str) -> np.ndarray:
    """stuffthingmap values -> mmseg's 171 train ids; values outside the mapping are an error naming ``where``."""
    bad = np.unique(mask[~_VALID[mask]])
    if bad.size:
        raise PrepareError(f"{where}: values {bad.tolist()} are not COCO-Stuff label ids (0..181 except "
                           f"{list(UNUSED_IDS)}, and 255)")
    return _LUT[mask]


def convert_map(out: str, zip_path: str, member: str, final: str) -> str:
    """Pool task: one stuffthingmap -> ``*_labelTrainIds.png`` (coco_stuff164k.py's ``convert_to_trainID``)."""
    where = f"{Path(zip_path).name}:{member}"
    try:
        img = Image.open(io.BytesIO(zip_read(zip_path, member)))
        img.load()
    except OSError as err:
        raise PrepareError(f"{where}: cannot decode the PNG ({err})") from err
    if img.mode not in ("L", "P"):
        raise PrepareError(f"{where}: expected a single-channel label map, got PIL mode {img.mode}")
    write_png(Path(out), Path(final), to_train_ids(np.array(img), where))
    return final


def prepare(args, out: Path, pool, counts, log) -> dict[str, object]:
    images: dict[str, set[str]] = {"train2017": set(), "val2017": set()}
    for zip_path in args.images:
        found = 0
        for member in zip_names(zip_path):
            if not (m := IMAGE.search(member)):
                continue
            found += 1
            split, stem = m.groups()
            images[split].add(stem)
            final = out / "images" / split / f"{stem}.jpg"
            if final.exists():
                counts["already there"] += 1
            else:
                pool.submit(copy_zip_member, str(out), str(zip_path), member, str(final))
        if not found:
            raise PrepareError(f"--images {zip_path}: no train2017/*.jpg or val2017/*.jpg members "
                               "(expected COCO's train2017.zip / val2017.zip)")
    masks: dict[str, set[str]] = {"train2017": set(), "val2017": set()}
    for member in zip_names(args.annotations):
        if not (m := STUFF.search(member)):
            continue
        split, stem = m.groups()
        masks[split].add(stem)
        # coco_stuff164k.py: osp.basename(maskpath).split('.')[0] + '_labelTrainIds.png'
        final = out / "annotations" / split / f"{stem.split('.')[0]}_labelTrainIds.png"
        if final.exists():
            counts["already there"] += 1
        else:
            pool.submit(convert_map, str(out), str(args.annotations), member, str(final))
    if not any(masks.values()):
        raise PrepareError(f"--annotations {args.annotations}: no train2017/*.png or val2017/*.png members "
                           "(expected stuffthingmaps_trainval2017.zip)")
    pool.drain()
    summary: dict[str, object] = {}
    for split in ("train2017", "val2017"):
        pairs = images[split] & masks[split]
        summary[f"{split} images"], summary[f"{split} masks"], summary[f"{split} pairs"] = (
            len(images[split]), len(masks[split]), len(pairs))
        log(f"  {split}: {len(images[split])} images, {len(masks[split])} label maps -> "
            f"{len(pairs)} pairs")
        for what, names in (("images without a label map", images[split] - masks[split]),
                            ("label maps without an image", masks[split] - images[split])):
            if names:
                log(f"    {len(names)} {what}, e.g. {sorted(names)[:3]}")
    total = int(summary["train2017 masks"]) + int(summary["val2017 masks"])
    log(f"  label maps converted to 171 train ids: {total}"
        + ("" if total == COCO_LEN else f" (the full COCO-Stuff 164k has {COCO_LEN}: partial archives?)"))
    return summary
