"""Latent class mining (Eq. 1): seeds, planted clusters recovered, seen pixels untouched, deterministic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2s.config import load_config
from c2s.teacher.mining import mine_latent_classes, window_seeds

NUM_SEEN = 10
SEEN_ID = 5


@pytest.fixture(scope="module")
def mining_cfg():
    return load_config("toy_c2s").mining


def planted(noise=0.05, seed=1, d=64, h=16, w=16, px=8):
    """Token grid (h, w): columns 0-3 seen, then three latent classes (two stacked blocks and a strip)."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(4, d, generator=g), dim=1)
    region = torch.zeros(h, w, dtype=torch.long)
    region[:, :4] = 3
    region[:8, 4:10] = 0
    region[8:, 4:10] = 1
    region[:, 10:] = 2
    dense = F.normalize(protos[region].permute(2, 0, 1) + noise * torch.randn(d, h, w, generator=g), dim=0)
    pix = region.repeat_interleave(px, 0).repeat_interleave(px, 1)
    label = torch.full(pix.shape, 255, dtype=torch.long)
    label[pix == 3] = SEEN_ID
    return dense, label, pix


def best_iou(pseudo, gt):
    return max(float(((pseudo == k) & gt).sum() / ((pseudo == k) | gt).sum()) for k in torch.unique(pseudo))


def test_window_seed_counts_follow_eq1():
    # 8x8 grid, all unannotated: o=2 stride 1 -> 7x7, o=4 stride 2 -> 3x3, o=8 -> 1 window.
    tokens = F.normalize(torch.randn(16, 8, 8), dim=0)
    assert len(window_seeds(tokens, torch.ones(8, 8, dtype=torch.bool), (2, 4, 8), 0.5)) == 49 + 9 + 1
    # 9x9, o=4 stride 2: starts 0, 2, 4 plus the border-flush 5 -> 4 x 4 windows; o=16 does not fit.
    tokens = F.normalize(torch.randn(16, 9, 9), dim=0)
    assert len(window_seeds(tokens, torch.ones(9, 9, dtype=torch.bool), (4, 16), 0.5)) == 16
    # A window seeds only if >= half its tokens are unannotated: left 3 columns of 8 unannotated, o=2
    # windows at columns 0-1 and 1-2 fully, 2-3 half -> 3 column starts x 7 row starts.
    unl = torch.zeros(8, 8, dtype=torch.bool)
    unl[:, :3] = True
    assert len(window_seeds(tokens[:, :8, :8] * unl, unl, (2,), 0.5)) == 21
    # The seed is the window mean: one window covering everything = the normalised mean token.
    one = window_seeds(tokens[:, :8, :8], torch.ones(8, 8, dtype=torch.bool), (8,), 0.5)
    assert torch.allclose(one[0], F.normalize(tokens[:, :8, :8].mean(dim=(1, 2)), dim=0), atol=1e-6)


def test_recovers_planted_clusters(mining_cfg):
    dense, label, pix = planted()
    pseudo = mine_latent_classes(dense, label, NUM_SEEN, mining_cfg)
    assert pseudo.shape == label.shape and pseudo.dtype == torch.int64
    latent_ids = sorted(int(v) for v in torch.unique(pseudo) if NUM_SEEN <= v < 255)
    assert len(latent_ids) == 3
    assert latent_ids == [NUM_SEEN, NUM_SEEN + 1, NUM_SEEN + 2]
    for c in range(3):
        assert best_iou(pseudo, pix == c) >= 0.9
    # Seen pixels keep their label; no seen position is ever latent.
    assert torch.equal(pseudo[label != 255], label[label != 255])
    assert int(((pseudo >= NUM_SEEN) & (label != 255)).sum()) == 0
    # Largest first: class 2 (16 x 6 tokens) > classes 0, 1 (8 x 6 each).
    assert best_iou(pseudo == NUM_SEEN, pix == 2) >= 0.9


def test_deterministic_for_fixed_seed(mining_cfg):
    dense = F.normalize(torch.randn(32, 16, 16, generator=torch.Generator().manual_seed(0)), dim=0)
    label = torch.full((64, 64), 255, dtype=torch.long)
    label[:20] = 3
    cfg = {**mining_cfg, "max_seeds": 32, "merge_threshold": 0.99}  # subsampling active
    a = mine_latent_classes(dense, label, NUM_SEEN, cfg)
    b = mine_latent_classes(dense, label, NUM_SEEN, cfg)
    assert torch.equal(a, b)
    assert int((a >= NUM_SEEN).sum()) > 0
    assert set(torch.unique(a).tolist()) <= {3, 255} | set(range(NUM_SEEN, NUM_SEEN + cfg["k_max"]))


def test_no_unannotated_area_no_latent(mining_cfg):
    dense, _, _ = planted()
    label = torch.full((128, 128), 2, dtype=torch.long)
    assert torch.equal(mine_latent_classes(dense, label, NUM_SEEN, mining_cfg), label)


def test_k_max_and_min_region(mining_cfg):
    dense, label, pix = planted()
    one = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "k_max": 1})
    assert sorted(int(v) for v in torch.unique(one)) == [SEEN_ID, NUM_SEEN, 255]
    assert best_iou(one, pix == 2) >= 0.9  # the largest survives
    # min_region above every cluster's size (96 tokens max) -> nothing latent.
    none = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "min_region": 97})
    assert torch.equal(none, label)
    with pytest.raises(ValueError, match="k_max"):
        mine_latent_classes(dense, label, 250, mining_cfg)
