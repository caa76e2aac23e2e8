"""``c2s predict``: segment your own images into any class names with a trained student (no CLIP vision tower).

    c2s predict RUN_OR_CHECKPOINT IMAGES... --classes "cat,dog,red cross" [--out DIR]
    c2s predict RUN_OR_CHECKPOINT photos/ --classes names.txt          # one name per line
    c2s predict RUN_OR_CHECKPOINT "shots/*.jpg" --dataset voc12         # a catalog dataset's class list

Per image, in ``--out``: ``<stem>_label.png`` (class ids as a palette PNG, 16-bit greyscale above 256 classes),
``<stem>_overlay.png`` (the image blended with the class colours, legend of the classes present) and
``<stem>.json`` (class names, pixel fractions, mean softmax scores, size). Images that cannot be decoded are
named and skipped; the others are still written (exit status 1 when any was skipped). Last line: a JSON
summary. Inference and text embeddings: :class:`c2s.segmenter.Segmenter`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from c2s.segmenter import (
    ClassNameError,
    ImageReadError,
    Prediction,
    Segmenter,
    expand_images,
    progress_printer,
    read_image,
)

CHUNK = 32  # images decoded and held at once


def parse_classes(value: str) -> list[str]:
    """``--classes``: an existing text file (one name per line; a final newline is fine) or a comma list.

    Empty names are refused, naming their position (a blank line of the file, or ``a,,b``)."""
    path = Path(value)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
        if blank:
            raise ClassNameError(f"--classes file {path}: lines {blank} are empty (one class name per line)")
        return [line.strip() for line in lines]
    names = [n.strip() for n in value.split(",")]
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise ClassNameError(f"--classes {value!r}: names {empty} (1-based) are empty")
    return names


def label_image(labels: np.ndarray, num_classes: int):
    """Class ids as a PIL image: palette (ids < 256, colours of c2s.viz.palette) or 16-bit greyscale."""
    from PIL import Image

    from c2s.viz import palette

    if num_classes <= 256:
        im = Image.fromarray(labels.astype(np.uint8), mode="P")
        colours = palette(num_classes)[:num_classes]
        im.putpalette(colours.flatten().tolist())
        return im
    return Image.fromarray(labels.astype(np.uint16))


def label_png(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """:func:`label_image` written to ``path`` (a file name or a binary file object) as PNG."""
    label_image(labels, num_classes).save(path, format="PNG")


def overlay_image(image: np.ndarray, pred: Prediction, alpha: float = 0.5):
    """The image blended with the class colours, and a legend strip of the classes present (largest first)."""
    from PIL import Image, ImageDraw, ImageFont

    from c2s.viz import palette

    colours = palette(len(pred.classes))[: len(pred.classes)]
    blend = (image.astype(np.float32) * (1 - alpha) + colours[pred.labels].astype(np.float32) * alpha).astype(np.uint8)
    present = [int(i) for i in np.argsort(-pred.fractions) if pred.fractions[i] > 0]
    font = ImageFont.load_default()
    row = 14
    width = 12 + max((int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(
        f"{pred.classes[i]} {100 * pred.fractions[i]:.1f}%", font=font)) for i in present), default=0) + 24
    height = max(image.shape[0], row * len(present) + 8)
    canvas = Image.new("RGB", (image.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(blend), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, i in enumerate(present):
        x, y = image.shape[1] + 6, 4 + k * row
        draw.rectangle([x, y + 1, x + 10, y + 11], fill=tuple(int(c) for c in colours[i]), outline=(0, 0, 0))
        draw.text((x + 16, y), f"{pred.classes[i]} {100 * pred.fractions[i]:.1f}%", fill=(0, 0, 0), font=font)
    return canvas


def overlay_png(image: np.ndarray, pred: Prediction, path: Path, alpha: float = 0.5) -> None:
    """:func:`overlay_image` written to ``path`` (a file name or a binary file object) as PNG."""
    overlay_image(image, pred, alpha).save(path, format="PNG")


def summary(pred: Prediction) -> dict:
    """Size ``[H, W]``, class names, pixel fraction and mean score per class (JSON-ready; c2s serve's too)."""
    return {
        "size": [int(pred.labels.shape[0]), int(pred.labels.shape[1])],
        "classes": list(pred.classes),
        "fractions": {c: round(float(f), 6) for c, f in zip(pred.classes, pred.fractions)},
        "scores": {c: round(float(s), 6) for c, s in zip(pred.classes, pred.scores)},
    }


def write_outputs(image: np.ndarray, pred: Prediction, out_dir: Path, stem: str) -> dict:
    """The three files of one image; returns its JSON record."""
    label_png(pred.labels, len(pred.classes), out_dir / f"{stem}_label.png")
    overlay_png(image, pred, out_dir / f"{stem}_overlay.png")
    record = {"image": pred.source, **summary(pred),
              "label_png": f"{stem}_label.png", "overlay_png": f"{stem}_overlay.png"}
    (out_dir / f"{stem}.json").write_text(json.dumps(record, indent=2))
    return record


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 2
    while stem in used:  # two images of one name from different folders
        stem, k = f"{path.stem}-{k}", k + 1
    used.add(stem)
    return stem


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="c2s predict", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (its newest checkpoint) or checkpoint directory")
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--classes", help="class names: a comma list, or a text file with one name per line")
    names.add_argument("--dataset", help="use a catalog dataset's class list (e.g. toy, voc12)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the run's config, e.g. teacher.checkpoint=/path/ViT-B-16.pt "
                             "or evaluation.mode=whole (repeatable)")
    args = parser.parse_args(argv)

    try:
        if args.dataset:
            from c2s.data.catalog import get_dataset_info

            classes = list(get_dataset_info(args.dataset).classes)
        else:
            classes = parse_classes(args.classes)
        seg = Segmenter.from_run(args.run, device=args.device, overrides=args.overrides)
        text = seg.text_embeddings(classes)
    except (ClassNameError, FileNotFoundError) as err:
        print(f"c2s predict: error: {err}", file=sys.stderr)
        return 2
    paths, problems = expand_images(args.images)
    for problem in problems:
        print(f"c2s predict: skipped {problem}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    failed = list(problems)
    written = 0
    progress = progress_printer("[c2s predict]")
    for start in range(0, len(paths), CHUNK):
        chunk, images = [], []
        for path in paths[start:start + CHUNK]:
            try:
                images.append(read_image(path))
                chunk.append(path)
            except ImageReadError as err:
                print(f"c2s predict: skipped {err}", file=sys.stderr)
                failed.append(str(err))
        preds = seg.predict_with_text(images, classes, text, batch_size=args.batch_size)
        for path, image, pred in zip(chunk, images, preds):
            pred = Prediction(pred.classes, pred.labels, pred.scores, pred.fractions, pred.confidence, str(path))
            write_outputs(image, pred, args.out, _unique_stem(path, used))
            top = ", ".join(f"{pred.classes[i]} {100 * pred.fractions[i]:.1f}%"
                            for i in np.argsort(-pred.fractions)[:4] if pred.fractions[i] > 0)
            print(f"{path}: {top}", flush=True)
            written += 1
        progress(min(start + CHUNK, len(paths)), len(paths))
    print(json.dumps({"predict": str(args.run), "images": written, "skipped": failed, "classes": classes,
                      "templates": seg.templates, "out": str(args.out)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
