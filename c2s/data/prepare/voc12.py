"""``c2s data prepare voc12 --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out DIR``.

Writes mmseg's VOC 2012 aug root (``DIR`` = mmseg's ``data_root='data/VOCdevkit/VOC2012'``), as the VOC tar
extracted plus mmseg's ``tools/dataset_converters/voc_aug.py`` make it:

- ``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/{train,val,trainval}.txt``: copied from
  the VOC tar (members ``VOCdevkit/VOC2012/...``);
- ``SegmentationClassAug/<name>.png``: every SBD ``benchmark_RELEASE/dataset/cls/<name>.mat`` converted as
  ``voc_aug.py``'s ``convert_mat``: ``loadmat(f)['GTcls'][0]['Segmentation'][0].astype(np.uint8)`` saved as PNG;
- ``ImageSets/Segmentation/aug.txt`` = (SBD train + SBD val) - (VOC train + VOC val) and ``trainaug.txt`` =
  (VOC train + SBD train + SBD val) - VOC val, as ``voc_aug.py``'s ``generate_aug_list`` (a set difference;
  written sorted here, where ``voc_aug.py`` writes Python's set order).

mmseg's ``configs/_base_/datasets/pascal_voc12_aug.py`` trains on train.txt + SegmentationClass concatenated
with aug.txt + SegmentationClassAug: 1,464 + 9,118 = 10,582 images (``voc_aug.py``'s ``AUG_LEN``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from c2s.data.prepare.common import PrepareError, write_bytes, write_lines, write_png

AUG_LEN = 10582
VOC_MEMBER = re.compile(r"(?:^|/)VOC2012/(JPEGImages/[^/]+\.jpg|SegmentationClass/[^/]+\.png"
                        r"|ImageSets/Segmentation/[^/]+\.txt)$")
SBD_MAT = re.compile(r"(?:^|/)dataset/cls/([^/]+)\.mat$")
SBD_LIST = re.compile(r"(?:^|/)dataset/(train|val)\.txt$")
SEG = "ImageSets/Segmentation"


def convert_mat(out: str, data: bytes, final: str, member: str) -> str:
    """Pool task: one SBD ``.mat`` -> ``SegmentationClassAug/<name>.png`` (voc_aug.py's ``convert_mat``)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
        mask = mat["GTcls"][0]["Segmentation"][0].astype(np.uint8)
    except (ValueError, KeyError, IndexError, TypeError) as err:  # scipy's errors for a bad or foreign file
        raise PrepareError(f"{member}: not an SBD class annotation (GTcls.Segmentation): {err}") from err
    write_png(Path(out), Path(final), mask)
    return "SegmentationClassAug"


def copy_bytes(out: str, data: bytes, final: str) -> str:
    write_bytes(Path(out), Path(final), data)
    return final.split("/")[-2] if "/ImageSets/" not in final else "ImageSets"


def _lines(data: bytes) -> list[str]:
    return [line.strip() for line in data.decode().splitlines() if line.strip()]


def prepare(args, out: Path, pool, counts: dict[str, int], log) -> dict[str, object]:
    """Stream both archives into ``out``; returns the counts the run prints and records."""
    from c2s.data.prepare.common import tar_members

    lists: dict[str, list[str]] = {}
    for name, read in tar_members(args.voc, "voc12", quiet=args.quiet):
        m = VOC_MEMBER.search(name)
        if not m:
            continue
        final = out / m.group(1)
        if m.group(1).startswith("ImageSets/"):
            data = read()
            lists[f"voc {final.stem}"] = _lines(data)
            pool.here(copy_bytes, str(out), data, str(final))
        elif final.exists():
            counts["already there"] += 1
        else:
            pool.here(copy_bytes, str(out), read(), str(final))
    for needed in ("voc train", "voc val"):
        if needed not in lists:
            raise PrepareError(f"--voc {args.voc}: no VOCdevkit/VOC2012/{SEG}/{needed[4:]}.txt in the archive "
                               "(expected VOCtrainval_11-May-2012.tar)")
    for name, read in tar_members(args.sbd, "voc12", quiet=args.quiet):
        if m := SBD_LIST.search(name):
            lists[f"sbd {m.group(1)}"] = _lines(read())
        elif m := SBD_MAT.search(name):
            final = out / "SegmentationClassAug" / f"{m.group(1)}.png"
            if final.exists():
                counts["already there"] += 1
            else:
                pool.submit(convert_mat, str(out), read(), str(final), f"{args.sbd.name}:{name}")
    for needed in ("sbd train", "sbd val"):
        if needed not in lists:
            raise PrepareError(f"--sbd {args.sbd}: no benchmark_RELEASE/dataset/{needed[4:]}.txt in the archive "
                               "(expected SBD's benchmark.tgz)")
    pool.drain()
    voc_train, voc_val = lists["voc train"], lists["voc val"]
    sbd_all = lists["sbd train"] + lists["sbd val"]
    aug = sorted(set(sbd_all) - set(voc_train + voc_val))
    trainaug = sorted(set(voc_train + sbd_all) - set(voc_val))
    write_lines(out, out / SEG / "aug.txt", aug)
    write_lines(out, out / SEG / "trainaug.txt", trainaug)
    missing = [f"{n} (train.txt)" for n in voc_train if not _pair_exists(out, n, "SegmentationClass")]
    missing += [f"{n} (val.txt)" for n in voc_val if not _pair_exists(out, n, "SegmentationClass")]
    missing += [f"{n} (aug.txt)" for n in aug if not _pair_exists(out, n, "SegmentationClassAug")]
    if missing:
        raise PrepareError(f"{len(missing)} listed samples lack their image or mask after reading both archives, "
                           f"e.g. {missing[:5]}; the archives do not match (VOC 2012 trainval + SBD expected)")
    summary = {
        "JPEGImages": _count(out / "JPEGImages", ".jpg"),
        "SegmentationClass": _count(out / "SegmentationClass", ".png"),
        "SegmentationClassAug": _count(out / "SegmentationClassAug", ".png"),
        "train.txt": len(voc_train), "val.txt": len(voc_val), "aug.txt": len(aug), "trainaug.txt": len(trainaug),
    }
    log(f"  JPEGImages {summary['JPEGImages']}, SegmentationClass {summary['SegmentationClass']}, "
        f"SegmentationClassAug {summary['SegmentationClassAug']} (from SBD .mat)")
    log(f"  {SEG}: train.txt {len(voc_train)}, val.txt {len(voc_val)}, aug.txt {len(aug)}, "
        f"trainaug.txt {len(trainaug)}")
    total = len(voc_train) + len(aug)
    log(f"  training images: train.txt + aug.txt = {total}"
        + ("" if total == AUG_LEN else f" (the full VOC aug has {AUG_LEN}: partial archives?)"))
    return summary


def _pair_exists(out: Path, name: str, mask_dir: str) -> bool:
    return (out / "JPEGImages" / f"{name}.jpg").is_file() and (out / mask_dir / f"{name}.png").is_file()


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for p in folder.iterdir() if p.name.endswith(suffix)) if folder.is_dir() else 0
