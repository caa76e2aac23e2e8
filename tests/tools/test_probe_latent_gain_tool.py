"""tools/probe_latent_gain.py: the latent-pixel statistics it prints, on hand-built logits."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

_spec = importlib.util.spec_from_file_location("probe_latent_gain",
                                               Path(__file__).parents[2] / "tools" / "probe_latent_gain.py")
gain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gain)


def test_latent_pixel_stats_on_hand_built_logits():
    # 2 seen classes, 2 latent slots (the second padded); 3 pixels: seen class 1, latent class 2, latent class 2
    beta, bias = 10.0, -1.0
    logits = torch.tensor([[0.0, 2.0, -4.0, -1e4],  # seen pixel: class 1 wins
                           [1.0, 0.0, 4.0, -1e4],  # latent pixel: latent cos 0.5 (10 * 0.5 - 1), latent wins
                           [3.0, 0.0, 1.0, -1e4]]).T.reshape(1, 4, 1, 3)  # latent cos 0.2, seen class 0 wins
    target = torch.tensor([[[1, 2, 2]]])
    out = gain.latent_pixel_stats(logits, target, num_seen=2, beta=beta, bias=bias)
    assert (out["latent_pixels"], out["seen_pixels"]) == (2, 1)
    p_win = float(torch.softmax(torch.tensor([1.0, 0.0, 4.0]), 0)[2])
    p_lose = float(torch.softmax(torch.tensor([3.0, 0.0, 1.0]), 0)[2])
    assert out["latent_ce"] == pytest.approx(-(np.log(p_win) + np.log(p_lose)) / 2, rel=1e-5)
    assert out["latent_ce_chance"] == pytest.approx(np.log(3))  # the padded slot is not in play
    assert out["latent_wins"] == 0.5
    assert out["latent_prob"] == pytest.approx((p_win + p_lose) / 2, rel=1e-5)
    assert out["latent_cos_to_own_embedding"] == pytest.approx((0.5 + 0.2) / 2)
    assert out["best_seen_logit_on_latent"] == pytest.approx((1.0 + 3.0) / 2)
    assert out["seen_ce"] == pytest.approx(-np.log(float(torch.softmax(torch.tensor([0.0, 2.0, -4.0]), 0)[1])),
                                           rel=1e-5)
