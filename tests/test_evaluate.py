"""Evaluation on a planted prediction gives the hand-computed IoUs and hIoU."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from c2s.config import load_config
from c2s.evaluate import evaluate_student, predict


class PlantedStudent(torch.nn.Module):
    """'Predicts' a fixed class map: features are one-hot rows of the planted map (D = N classes)."""

    stride = 1

    def __init__(self, planted: np.ndarray, num_classes: int):
        super().__init__()
        self.planted = torch.from_numpy(planted)
        self.num_classes = num_classes

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(self.planted, self.num_classes).permute(2, 0, 1).float()
        return onehot[None].expand(images.shape[0], -1, -1, -1)


def _write_toy_val(root, label: np.ndarray):
    from PIL import Image

    for sub in ("img_dir/val", "ann_dir/val", "img_dir/train", "ann_dir/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = label.shape
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "img_dir/val/a.png")
    Image.fromarray(label.astype(np.uint8)).save(root / "ann_dir/val/a.png")


def test_planted_prediction_gives_hand_computed_hiou(tmp_path):
    from c2s.data.catalog import get_dataset_info

    info = get_dataset_info("toy")
    seen, unseen = info.seen_ids[0], info.unseen_ids[0]
    n = len(info.classes)
    # Ground truth: left half seen class, right half unseen class, one ignore row.
    label = np.full((8, 8), seen, np.int64)
    label[:, 4:] = unseen
    label[0] = 255
    # Prediction: the seen class spills one column into the unseen half.
    planted = np.full((8, 8), seen, np.int64)
    planted[:, 5:] = unseen
    # Toy masks on disk hold raw ids; write the inverse of the catalog's mapping.
    valid = info.valid_raw_ids
    inverse = dict(zip(info.map_raw(valid).tolist(), valid.tolist(), strict=True))
    raw = np.vectorize(lambda v: inverse.get(int(v), 255))(label)
    _write_toy_val(tmp_path, raw)
    cfg = load_config("toy_c2s", ["data.dataset=toy", "evaluation.mode=whole", "data.eval_scale=[8, 8]",
                                  "loss.alpha=1.0"])
    student = PlantedStudent(planted, n)
    text = torch.eye(n)
    metrics = evaluate_student(student, text, cfg, tmp_path, tmp_path / "out", step=3)
    # 7 labelled rows: seen TP 28, FP 7 (column 4) -> IoU 28/35; unseen TP 21, FN 7 -> IoU 21/28.
    s, u = 100 * 28 / 35, 100 * 21 / 28
    assert metrics["sIoU"] == pytest.approx(s)
    assert metrics["uIoU"] == pytest.approx(u)
    assert metrics["hIoU"] == pytest.approx(2 * s * u / (s + u))
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["step"] == 3 and saved["hIoU"] == pytest.approx(metrics["hIoU"])
    table = pd.read_parquet(tmp_path / "out" / "per_class.parquet")
    assert table.set_index("class_id").loc[unseen, "iou"] == pytest.approx(u)
    assert not table.set_index("class_id").loc[unseen, "seen"]
    assert (tmp_path / "out" / "panels.png").stat().st_size > 1000


class PointwiseStudent(torch.nn.Module):
    """Features at each pixel are the one-hot of that pixel's red value: the class map of any crop is the
    crop of the class map, so slide inference must reproduce whole inference exactly. Records its calls."""

    stride = 1

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.crops: list[tuple[int, int]] = []

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.crops.append(tuple(images.shape[-2:]))
        return torch.nn.functional.one_hot(images[:, 0].long(), self.num_classes).permute(0, 3, 1, 2).float()


def test_slide_inference_equals_whole_for_a_pointwise_model():
    planted = np.random.default_rng(0).integers(0, 5, size=(20, 28))
    student = PlantedStudent(planted, 5)
    image = np.zeros((20, 28, 3), np.uint8)
    whole = predict(student, image, torch.eye(5), 1.0, {"mode": "whole"})
    assert np.array_equal(whole, planted)
    # The same map through sliding 8x8 windows at stride 5 (overlapping, the last window flush with the
    # border): a pointwise model must give the whole-image answer pixel for pixel.
    image[..., 0] = planted
    pointwise = PointwiseStudent(5)
    slide = predict(pointwise, image, torch.eye(5), 1.0, {"mode": "slide", "crop_size": [8, 8], "stride": [5, 5]})
    assert np.array_equal(slide, planted)
    # mmseg's grid: rows = ceil((20 - 8) / 5) + 1 = 4, cols = ceil((28 - 8) / 5) + 1 = 5, all full crops
    assert pointwise.crops == [(8, 8)] * 20
    # An image smaller than the crop is one window of the image's own size.
    pointwise.crops.clear()
    small = predict(pointwise, image[:6, :7], torch.eye(5), 1.0, {"mode": "slide", "crop_size": [8, 8],
                                                                  "stride": [5, 5]})
    assert np.array_equal(small, planted[:6, :7]) and pointwise.crops == [(6, 7)]
    with pytest.raises(ValueError, match="evaluation.mode"):
        predict(student, image, torch.eye(5), 1.0, {"mode": "tiles"})


def test_slide_inference_averages_overlapping_windows():
    """Each pixel's logits combine exactly the windows covering it (mmseg slide_inference). Mean and sum
    give the same argmax (the count is shared by all classes of a pixel), so this pins the window layout."""

    class WindowCounter(torch.nn.Module):
        # class 0 scores 1 in every window; class 1 scores 1.5 only in the first window (top-left)
        stride = 1

        def __init__(self):
            super().__init__()
            self.calls = 0

        def normalize(self, images):
            return images.permute(0, 3, 1, 2).float()

        def forward(self, images):
            self.calls += 1
            out = torch.zeros(images.shape[0], 2, *images.shape[-2:])
            out[:, 0] = 1.0
            out[:, 1] = 1.5 if self.calls == 1 else 0.0
            return out

    pred = predict(WindowCounter(), np.zeros((6, 6, 3), np.uint8), torch.eye(2), 1.0,
                   {"mode": "slide", "crop_size": [4, 4], "stride": [2, 2]})
    # windows start at 0 and 2 on each axis: only pixels in rows and cols 0-1 are covered by the first
    # window alone (class 1 wins, 1.5 > 1); the rest of it is shared by 2 or 4 windows (1.5/2 < 1).
    expected = np.zeros((6, 6), np.int64)
    expected[:2, :2] = 1
    assert np.array_equal(pred, expected)


# --- Evaluation sharded over workers (issue 15 item 4) ---------------------------------------------------

class TinyBNStudent(torch.nn.Module):
    """A seeded two-conv student with BatchNorm (its running statistics are what DDP lets drift per rank)."""

    def __init__(self, dim: int = 16):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.Conv2d(8, dim, 3, padding=1))
        with torch.no_grad():
            self.body[1].running_mean.uniform_(-0.2, 0.2)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def _toy_eval_setup(tmp_path, images_val: int = 5):
    """A generated toy val split of ``images_val`` 48x48 images, :class:`TinyBNStudent` in eval mode and
    seeded random unit text embeddings of all 20 classes; sliding windows that overlap."""
    from c2s.world.generate import generate_world

    root = tmp_path / "world"
    generate_world({"images_train": 1, "images_val": images_val, "size": 48}, root)
    cfg = load_config("toy_c2s", ["data.dataset=toy", "evaluation.mode=slide", "evaluation.crop_size=[32, 32]",
                                  "evaluation.stride=[24, 24]", "data.eval_scale=[48, 48]", "loss.alpha=1.0"])
    student = TinyBNStudent().eval()
    text = torch.nn.functional.normalize(torch.randn(20, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    return cfg, student, text, root


def test_sharded_confusion_matrices_sum_to_the_single_worker_matrix(tmp_path):
    from PIL import Image

    from c2s.data.catalog import get_dataset_info, list_split
    from c2s.evaluate import shard_confusion, shard_pairs
    from c2s.metrics import summarize

    cfg, student, text, root = _toy_eval_setup(tmp_path)
    pairs = list_split(get_dataset_info("toy"), root, "val").pairs
    assert [p[0].name for p in shard_pairs(pairs, 0, 2)] == ["000000.png", "000002.png", "000004.png"]
    assert [p[0].name for p in shard_pairs(pairs, 1, 2)] == ["000001.png", "000003.png"]
    assert [p[0].name for p in shard_pairs(pairs, 1, 2, max_images=3)] == ["000001.png"]
    with pytest.raises(ValueError, match=r"rank 2 outside \[0, 2\) workers"):
        shard_pairs(pairs, 2, 2)

    whole, n_whole, _ = shard_confusion(student, text, cfg, root)
    parts = [shard_confusion(student, text, cfg, root, rank=r, world=2) for r in range(2)]
    assert n_whole == 5 and [n for _, n, _ in parts] == [3, 2]
    summed = parts[0][0].matrix + parts[1][0].matrix
    assert torch.equal(summed, whole.matrix)
    # not a trivial matrix: every labelled pixel of 5 images counted, several classes predicted
    assert int(whole.matrix.sum()) == sum(int((np.asarray(Image.open(p[1])) > 0).sum()) for p in pairs)
    assert int((whole.matrix.sum(0) > 0).sum()) >= 3
    assert summarize(parts[0][0].iou(), []) != summarize(whole.iou(), [])  # a shard alone differs
    # world=1 evaluate_student writes the same matrix and the metrics computed from it
    metrics = evaluate_student(student, text, cfg, root, tmp_path / "out", step=1)
    assert np.array_equal(np.load(tmp_path / "out" / "confusion.npy"), whole.matrix.numpy())
    info = get_dataset_info("toy")
    expected = summarize(whole.iou(), info.unseen_ids)
    assert {k: metrics[k] for k in expected} == expected
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["images"] == 5 and saved["workers"] == 1 and saved["eval_s"] == metrics["eval_s"] > 0


def _gloo_worker(rank: int, init_file: str, tmp: str) -> None:
    """One of two processes in a gloo group: evaluate the same student, rank 1 with planted BN statistics."""
    from pathlib import Path

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        cfg, student, text, root = _toy_eval_setup(Path(tmp) / f"rank{rank}")
        if rank == 1:  # what DDP leaves on rank k after a step: its own batch's running statistics
            for name, buffer in student.named_buffers():
                if name.endswith("running_mean"):
                    buffer.add_(3.0)
        metrics = evaluate_student(student, text, cfg, root, Path(tmp) / f"out{rank}", step=2)
        (Path(tmp) / f"metrics{rank}.json").write_text(json.dumps(metrics))
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gloo_evaluation_equals_one_worker(tmp_path):
    """The real reduction: 2 processes in a gloo group (as Ray Train sets up on CPU) give the one-worker
    confusion matrix and metrics exactly; only rank 0 writes files; rank 0's BN statistics are used."""
    import torch.multiprocessing as mp

    mp.spawn(_gloo_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    cfg, student, text, root = _toy_eval_setup(tmp_path / "single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: same float sums in the forward pass
    try:
        single = evaluate_student(student, text, cfg, root, tmp_path / "single_out", step=2)
    finally:
        torch.set_num_threads(threads)
    ranks = [json.loads((tmp_path / f"metrics{r}.json").read_text()) for r in range(2)]
    keys = ("mIoU", "sIoU", "uIoU", "hIoU", "images")
    for got in ranks:
        assert {k: got[k] for k in keys} == {k: single[k] for k in keys}
    assert np.array_equal(np.load(tmp_path / "out0" / "confusion.npy"),
                          np.load(tmp_path / "single_out" / "confusion.npy"))
    assert json.loads((tmp_path / "out0" / "metrics.json").read_text())["workers"] == 2
    assert not (tmp_path / "out1").exists()
