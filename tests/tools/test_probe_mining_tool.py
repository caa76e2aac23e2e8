"""tools/probe_mining.py: per unseen class, the latent pixels and what the teacher reads on latent regions,
on a hand-built pseudo mask."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location("probe_mining", Path(__file__).parents[2] / "tools" / "probe_mining.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

NUM_SEEN = 2  # classes 0, 1 seen; 2, 3 unseen; latent ids 2 + j in the pseudo mask


def test_latent_region_reads_counts_pixels_purity_and_the_teachers_argmax():
    text = torch.eye(4)
    gt = np.array([[[0, 2, 2, 2],
                    [0, 2, 2, 3],
                    [1, 1, 3, 3]]])
    # latent id 2 (j = 0) on five pixels of class 2 and one of class 3; latent id 3 (j = 1) on two of class 3;
    # one pixel of class 2 left ignore
    pseudo = np.array([[[0, 255, 2, 2],
                        [0, 2, 2, 2],
                        [1, 1, 3, 3]]])
    local_ids = np.array([[0, 2, 3, -1]])
    local_valid = np.array([[True, True, True, False]])
    local = np.zeros((1, 4, 4), dtype=np.float32)
    local[0, 0] = [1, 0, 0, 0]
    local[0, 1] = [0, 0.2, 0.9, 0]  # read as class 2: its own
    local[0, 2] = [0, 0, 1, 0.5]  # read as class 2: not its own (class 3)
    out = probe.latent_region_reads(pseudo, gt, local, local_ids, local_valid, text, [2, 3], NUM_SEEN)
    assert (out[2]["pixels"], out[2]["latent_px"]) == (5, 4)
    assert (out[3]["pixels"], out[3]["latent_px"]) == (3, 3)
    assert out[2]["regions"] == 1 and out[2]["purity"] == 4 / 5 and out[2]["reads_own"] == 1 and out[2]["reads"] == [2]
    assert out[3]["regions"] == 1 and out[3]["purity"] == 1.0 and out[3]["reads_own"] == 0 and out[3]["reads"] == [2]
