"""Evaluation: the student alone (no CLIP) against text embeddings of ALL classes.

Inference (whole image or sliding windows, the classifier) is c2s/infer.py's, shared with ``c2s predict``.

Per-class IoU, sIoU / uIoU / hIoU (c2s.metrics), ``metrics.json``, ``per_class.parquet`` and PNG panels.
``c2s eval CHECKPOINT`` runs it on a saved checkpoint; the training job calls :func:`evaluate_student`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

# predict: the shared inference path (c2s/infer.py), re-exported here for the callers that import it from eval.
from c2s.infer import predict as predict
from c2s.metrics import ConfusionMatrix, all_reduce_, summarize
from c2s.paths import atomic_path


def per_class_table(iou: torch.Tensor, classes: tuple[str, ...], unseen_ids: tuple[int, ...]):
    import pandas as pd

    unseen = set(unseen_ids)
    return pd.DataFrame({
        "class": list(classes),
        "class_id": list(range(len(classes))),
        "seen": [i not in unseen for i in range(len(classes))],
        "iou": [float(v) * 100 for v in iou.tolist()],
    })


def _distributed() -> tuple[int, int]:
    """(rank, world) of the initialised torch.distributed group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_pairs(pairs: list, rank: int, world: int, max_images: int | None = None) -> list:
    """This worker's validation pairs: the first ``max_images`` of the listing (all when unset), then every
    ``world``-th from ``rank`` (files ``rank::world``). Disjoint across ranks, their union is the whole set."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside [0, {world}) workers")
    return list(pairs[: int(max_images)] if max_images else pairs)[rank::world]


@torch.no_grad()
def val_predictions(student: torch.nn.Module, text: torch.Tensor, cfg: Mapping[str, Any], info: Any,
                    pairs: list, device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(image, label, pred)`` of each validation ``(image_path, label_path)`` in ``pairs`` of dataset ``info``, as
    evaluation scores it: decoded, ``eval_transform``-ed, predicted with the run's ``loss.alpha``,
    ``loss.seen_logits`` and ``evaluation`` settings at the label's size."""
    from c2s.data.readers import decode_pair
    from c2s.data.transforms import eval_transform

    rng = np.random.default_rng(0)  # eval_transform is deterministic; the argument is its signature's
    for image_path, label_path in pairs:
        image, label = decode_pair(info, image_path, label_path)  # a bad file raises, naming both files
        image, label = eval_transform(image, label, cfg["data"], rng)
        # out_size: logits resized to the label's size before the argmax (mmseg's ori_shape), so an image
        # resized by data.eval_scale is scored against its full-size label.
        pred = predict(student, image, text, float(cfg["loss"]["alpha"]), cfg["evaluation"], device,
                       str(cfg["loss"]["seen_logits"]), out_size=label.shape)
        yield image, label, pred


def shard_confusion(student: torch.nn.Module, text: torch.Tensor, cfg: Mapping[str, Any], data_root: Path, *,
                    device: torch.device | str = "cpu", rank: int = 0, world: int = 1, keep_panels: int = 0,
                    ) -> tuple[ConfusionMatrix, int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Confusion matrix of this worker's slice (:func:`shard_pairs`) of the validation split, no reduction.

    Returns ``(confusion, images, shown)``; ``shown`` holds the first ``keep_panels`` (image, label, pred).
    Summing the matrices of ranks ``0..world-1`` gives the single-worker matrix exactly (integer counts).
    """
    from c2s.data.catalog import get_dataset_info, list_split

    info = get_dataset_info(cfg["data"]["dataset"])
    eval_cfg = cfg["evaluation"]
    if text.shape[0] != len(info.classes):
        raise ValueError(f"evaluation needs text embeddings for all {len(info.classes)} classes of "
                         f"{info.name}, got {text.shape[0]}")
    pairs = shard_pairs(list_split(info, Path(data_root), "val").pairs, rank, world, eval_cfg.get("max_images"))
    confusion = ConfusionMatrix(len(info.classes), info.ignore_index, device=device)
    shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start = last_print = time.perf_counter()
    for count, (image, label, pred) in enumerate(val_predictions(student, text, cfg, info, pairs, device), 1):
        confusion.update(torch.from_numpy(pred).to(device), torch.from_numpy(label.astype(np.int64)).to(device))
        if len(shown) < keep_panels:
            shown.append((image, label, pred))
        if time.perf_counter() - last_print > 30:
            last_print = time.perf_counter()
            print(f"[c2s eval] worker {rank}/{world}: {count}/{len(pairs)} images, "
                  f"{count / (last_print - start):.1f} img/s", flush=True)
    return confusion, len(pairs), shown


def evaluate_student(student: torch.nn.Module, text: torch.Tensor, cfg: Mapping[str, Any], data_root: Path,
                     out_dir: Path, *, device: torch.device | str = "cpu", step: int | None = None,
                     panels: bool = True) -> dict[str, float]:
    """Evaluate on the dataset's validation split; write metrics.json, per_class.parquet, confusion.npy and
    panels.png.

    ``text``: (N, D) embeddings of all N classes in catalog order. Returns sIoU/uIoU/hIoU/mIoU (percent),
    ``images`` and ``eval_s`` (wall seconds, including the reduction). Inside an initialised
    torch.distributed group (the training workers) every rank must call it: each evaluates its slice
    (:func:`shard_pairs`), the confusion matrices are summed with ``all_reduce`` and every rank gets the
    same metrics; rank 0 alone writes the files (panels from its own slice). Rank 0's buffers are
    broadcast first: under DDP a plain BatchNorm's running statistics are updated by each rank's own
    batch and only re-broadcast at the next forward, so without it rank k would evaluate another model.
    """
    from c2s.data.catalog import get_dataset_info

    start = time.perf_counter()
    rank, world = _distributed()
    if world > 1:
        for buffer in student.buffers():
            torch.distributed.broadcast(buffer, src=0)
    info = get_dataset_info(cfg["data"]["dataset"])
    confusion, count, shown = shard_confusion(
        student, text, cfg, data_root, device=device, rank=rank, world=world,
        keep_panels=int(cfg["evaluation"]["num_panels"]) if panels and rank == 0 else 0)
    confusion.all_reduce()
    images = all_reduce_(torch.tensor([count], dtype=torch.int64, device=confusion.matrix.device))
    count = int(images.item())
    if count == 0:
        raise ValueError(f"no validation images found under {data_root} for dataset {info.name}")
    iou = confusion.iou()
    metrics = {k: float(v) for k, v in summarize(iou, info.unseen_ids).items()}
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Written whole or not at all (c2s.paths.atomic_path): a node lost mid-write must not leave a half
        # parquet file that a sweep's table collection then reads (a multi-node scenario met one, 2026-12-05).
        with atomic_path(out_dir / "confusion.npy") as tmp, tmp.open("wb") as f:
            np.save(f, confusion.matrix.cpu().numpy())
        with atomic_path(out_dir / "per_class.parquet") as tmp:
            per_class_table(iou.cpu(), info.classes, info.unseen_ids).to_parquet(tmp, index=False)
        if shown:
            from c2s.viz import save_panels

            save_panels(shown, info, out_dir / "panels.png")
    elapsed = time.perf_counter() - start
    if rank == 0:
        with atomic_path(out_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps({**metrics, "step": step, "images": count, "workers": world,
                                       "eval_s": elapsed}, indent=2))
    return {**metrics, "images": count, "eval_s": elapsed}


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
    """Accept a checkpoint directory (checked), or a run directory: its newest intact ``checkpoint_*``.

    Each newer checkpoint whose ``state.pt`` is damaged (c2s.train.checkpoint.inspect_checkpoint: empty,
    truncated, not a zip, CRC mismatch, missing keys) is skipped with one line on stderr naming the file, why,
    and the checkpoint used instead. :class:`~c2s.train.checkpoint.CheckpointError` (a user error: one line,
    exit 2) names every file when none is intact, or when ``path`` is itself a damaged checkpoint;
    :class:`~c2s.train.checkpoint.NoCheckpointError` when ``path`` does not exist or holds no checkpoint.
    """
    from c2s.train.checkpoint import STATE_FILE, CheckpointError, checkpoint_damage, newest_intact_checkpoint

    path = Path(path)
    if (path / STATE_FILE).is_file():
        damage = checkpoint_damage(path)
        if damage is not None:
            raise CheckpointError(f"checkpoint {path / STATE_FILE} is damaged ({damage})")
        return path
    chosen = newest_intact_checkpoint(path)
    for state_file, damage in chosen.skipped:
        print(f"[c2s] checkpoint {state_file} is damaged ({damage}); using {chosen.path} (step {chosen.step})",
              file=sys.stderr, flush=True)
    return chosen.path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="c2s eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory or run directory")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluation.mode=whole")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT/../eval_<name>)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from c2s.config import apply_overrides
    from c2s.inputs import resolve_inputs
    from c2s.train.resolve import text_embeddings_for

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
