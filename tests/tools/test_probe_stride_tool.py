"""tools/probe_stride.py: the best prediction a given output stride allows, on hand-built label maps."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

_spec = importlib.util.spec_from_file_location("probe_stride",
                                               Path(__file__).parents[2] / "tools" / "probe_stride.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def square(size: int = 16, lo: int = 4, hi: int = 12) -> torch.Tensor:
    """(1, size, size): background 0, class 1 on [lo:hi, lo:hi]."""
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, lo:hi, lo:hi] = 1
    return labels


def test_a_square_on_the_grid_survives_stride_4_and_vanishes_at_8_and_16():
    labels = square()
    assert torch.equal(probe.stride_ceiling(labels, 2, 1), labels)
    # 4x4 cells: the square fills cells 1-2 of each axis. Along one axis bilinear upsampling gives pixel 4
    # (centre 4.5, between cell centres 2 and 6) 0.625 of cell 1: the edges come back exactly. At the corner
    # pixel (4, 4) cell (1, 1) weighs 0.625 ** 2 = 0.39 < 0.5: the four corners are lost.
    expected = labels.clone()
    expected[0, [4, 4, 11, 11], [4, 11, 4, 11]] = 0
    assert torch.equal(probe.stride_ceiling(labels, 2, 4), expected)
    # 8x8 cells hold a quarter of the square each (share 0.25 < background's 0.75): background everywhere
    assert int(probe.stride_ceiling(labels, 2, 8).sum()) == 0
    assert int(probe.stride_ceiling(labels, 2, 16).sum()) == 0


def test_ignore_pixels_take_no_share():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 3:5, 3:5] = 1  # 4 of 64 pixels: background wins the one 8x8 cell
    assert int(probe.stride_ceiling(labels, 2, 8).max()) == 0
    labels[labels == 0] = 255  # the rest ignored: class 1 is the only share left
    assert int(probe.stride_ceiling(labels, 2, 8).min()) == 1


def test_a_size_that_is_not_a_multiple_is_refused():
    with pytest.raises(ValueError, match="image size 16x16 is not a multiple of stride 5"):
        probe.stride_ceiling(square(), 2, 5)


def test_main_prints_one_line_per_stride_from_a_world_folder(tmp_path, capsys):
    """A toy_stuff world folder as c2s writes it: raw ids in ann_dir/val/*.png (catalog's map_raw)."""
    info = probe.get_dataset_info("toy_stuff")
    raw_of = {c: r for r, c in info.raw_to_class.items()}
    raw_bg, raw_obj = raw_of[info.classes.index("background")], raw_of[info.unseen_ids[0]]
    (tmp_path / "ann_dir" / "val").mkdir(parents=True)
    raw = np.where(square().numpy()[0] == 1, raw_obj, raw_bg).astype(np.uint8)
    Image.fromarray(raw).save(tmp_path / "ann_dir" / "val" / "000000.png")
    assert probe.main([str(tmp_path), "--strides", "4", "8"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["stride"] for r in rows] == [4, 8] and rows[0]["images"] == 1
    assert rows[0]["uIoU"] == 93.8 and rows[0]["sIoU"] == 98.0  # the square less its corners: 60 / 64, 192 / 196
    assert rows[1]["uIoU"] == 0.0 and rows[1]["sIoU"] == 75.0  # the square read as background: 192 / 256
