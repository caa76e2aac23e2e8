"""Evaluation: the student alone (no CLIP) against text embeddings of ALL classes.

Per-class IoU, sIoU / uIoU / hIoU (c2s.metrics), ``metrics.json``, ``per_class.parquet`` and PNG panels.
``c2s eval CHECKPOINT`` runs it on a saved checkpoint; the training job calls :func:`evaluate_student`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from c2s.metrics import ConfusionMatrix, summarize


@torch.no_grad()
def predict(student: torch.nn.Module, image: np.ndarray, text: torch.Tensor, alpha: float,
            eval_cfg: Mapping[str, Any], device: torch.device | str = "cpu", form: str = "dot") -> np.ndarray:
    """Class map (H,W) int64 for one uint8 image (H,W,3): whole-image or sliding-window inference.

    Sliding windows (``evaluation.mode = slide``) average the logits of overlapping crops, as mmseg does.
    """
    from c2s.method.objective import classify

    x = student.normalize(torch.from_numpy(np.array(image, copy=True))[None].to(device))
    _, _, height, width = x.shape
    text = text.to(device)

    def logits_of(crop: torch.Tensor) -> torch.Tensor:
        scores = classify(student(crop).float(), text, alpha, form)
        return F.interpolate(scores, size=crop.shape[-2:], mode="bilinear", align_corners=False)

    if eval_cfg["mode"] == "whole":
        return logits_of(x)[0].argmax(0).cpu().numpy()
    if eval_cfg["mode"] != "slide":
        raise ValueError(f"evaluation.mode must be 'whole' or 'slide', got {eval_cfg['mode']!r}")
    ch, cw = (int(v) for v in eval_cfg["crop_size"])
    sh, sw = (int(v) for v in eval_cfg["stride"])
    total = torch.zeros(1, text.shape[0], height, width, device=device)
    count = torch.zeros(1, 1, height, width, device=device)
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, max(height - ch, 0)), min(c * sw, max(width - cw, 0))
            y2, x2 = min(y1 + ch, height), min(x1 + cw, width)
            total[:, :, y1:y2, x1:x2] += logits_of(x[:, :, y1:y2, x1:x2])
            count[:, :, y1:y2, x1:x2] += 1
    return (total / count).argmax(1)[0].cpu().numpy()


def per_class_table(iou: torch.Tensor, classes: tuple[str, ...], unseen_ids: tuple[int, ...]):
    import pandas as pd

    unseen = set(unseen_ids)
    return pd.DataFrame({
        "class": list(classes),
        "class_id": list(range(len(classes))),
        "seen": [i not in unseen for i in range(len(classes))],
        "iou": [float(v) * 100 for v in iou.tolist()],
    })


def evaluate_student(student: torch.nn.Module, text: torch.Tensor, cfg: Mapping[str, Any], data_root: Path,
                     out_dir: Path, *, device: torch.device | str = "cpu", step: int | None = None,
                     panels: bool = True) -> dict[str, float]:
    """Evaluate on the dataset's validation split; write metrics.json, per_class.parquet, panels.png.

    ``text``: (N, D) embeddings of all N classes in catalog order. Returns sIoU/uIoU/hIoU/mIoU (percent).
    """
    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import iter_samples
    from c2s.data.transforms import eval_transform

    info = get_dataset_info(cfg["data"]["dataset"])
    eval_cfg = cfg["evaluation"]
    if text.shape[0] != len(info.classes):
        raise ValueError(f"evaluation needs text embeddings for all {len(info.classes)} classes of "
                         f"{info.name}, got {text.shape[0]}")
    confusion = ConfusionMatrix(len(info.classes), info.ignore_index, device=device)
    max_images = eval_cfg.get("max_images")
    rng = np.random.default_rng(0)
    shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start = last_print = time.perf_counter()
    count = 0
    for image, label, _, _ in iter_samples(info, data_root, "val"):
        image, label = eval_transform(image, label, cfg["data"], rng)
        pred = predict(student, image, text, float(cfg["loss"]["alpha"]), eval_cfg, device,
                       str(cfg["loss"]["seen_logits"]))
        confusion.update(torch.from_numpy(pred).to(device), torch.from_numpy(label.astype(np.int64)).to(device))
        if len(shown) < int(eval_cfg["num_panels"]):
            shown.append((image, label, pred))
        count += 1
        if time.perf_counter() - last_print > 30:
            last_print = time.perf_counter()
            print(f"[c2s eval] {count} images, {count / (last_print - start):.1f} img/s", flush=True)
        if max_images and count >= int(max_images):
            break
    if count == 0:
        raise ValueError(f"no validation images found under {data_root} for dataset {info.name}")
    iou = confusion.iou()
    metrics = summarize(iou, info.unseen_ids)
    metrics = {k: float(v) for k, v in metrics.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({**metrics, "step": step, "images": count}, indent=2))
    per_class_table(iou.cpu(), info.classes, info.unseen_ids).to_parquet(out_dir / "per_class.parquet", index=False)
    if panels and shown:
        from c2s.viz import save_panels

        save_panels(shown, info, out_dir / "panels.png")
    return metrics


def load_student_from_checkpoint(checkpoint_dir: Path, device: str = "cpu"):
    """Student + resolved config from a c2s checkpoint directory (``state.pt``)."""
    from c2s.config import from_dict
    from c2s.student import build_student
    from c2s.train.checkpoint import load_state

    state = load_state(checkpoint_dir)
    cfg = from_dict(state["config"])
    # The checkpoint holds every weight: the backbone's initialisation file is not needed (nor read).
    student = build_student({**cfg.model, "pretrained": None})
    student.load_state_dict(state["student"])
    return student.to(device).eval(), cfg, state


def find_checkpoint(path: Path) -> Path:
    """Accept a checkpoint directory, or a run directory (its newest ``checkpoint_*``)."""
    from c2s.train.checkpoint import STATE_FILE, latest_checkpoint

    return path if (path / STATE_FILE).is_file() else latest_checkpoint(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="c2s eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory or run directory")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluation.mode=whole")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT/../eval_<name>)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from c2s.config import apply_overrides
    from c2s.train.resolve import resolve_inputs, text_embeddings_for

    ckpt = find_checkpoint(args.checkpoint)
    student, cfg, state = load_student_from_checkpoint(ckpt, args.device)
    cfg = apply_overrides(cfg, args.overrides)
    inputs = resolve_inputs(cfg)
    _, all_text = text_embeddings_for(cfg, inputs)
    out = args.out or ckpt.parent / f"eval_{ckpt.name}"
    metrics = evaluate_student(student, all_text, cfg, inputs.data_root, out, device=args.device, step=state["step"])
    print(json.dumps({**metrics, "step": state["step"], "out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
