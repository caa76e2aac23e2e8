"""`c2s bench inference --quick` (issue 16, Table 2): the JSON line's figures are consistent with each other
and with the counters they come from (toy student and test CLIP at 64x64; the full-size run is in the README)."""

from __future__ import annotations

import json

import pytest
import torch

from c2s.bench.inference import ClipAtInference, LightHead, count, main


def test_quick_run_json_is_consistent(capsys):
    from c2s.bench.flops import student_complexity

    assert main(["--quick", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "inference" and out["size"] == 64 and out["batch"] == 1 and out["repeats"] == 2
    clip, student = out["clip_pipeline"], out["students"]["segformer_tiny"]
    # images/s = batch / median seconds; the speedup is the ratio of the two. Recomputed from the JSON's rounded
    # values (seconds to 6 significant digits, images/s to 3 decimals): within that rounding, relative for large
    # values, 6e-4 absolute for small ones.
    assert clip["images_per_s"] == pytest.approx(1 / clip["forward_median_s"], rel=1e-3, abs=6e-4)
    assert student["images_per_s"] == pytest.approx(1 / student["forward_median_s"], rel=1e-3, abs=6e-4)
    assert student["speedup_vs_clip"] == pytest.approx(student["images_per_s"] / clip["images_per_s"],
                                                       rel=2e-3, abs=6e-4)
    # the student's figures are c2s bench flops' counter's
    assert student["flops"] == student_complexity("segformer_tiny", size=64, embed_dim=64)["flops"]
    assert student["paper_gflops"] is None  # no Table 2 row for the toy student
    assert clip["flops"] > 0 and clip["params_m"] > clip["head_params_m"] > 0


def test_clip_pipeline_runs_at_the_interpolated_size_and_counts_its_head():
    """The test CLIP (trained grid 4x4 at 32 px) at 64x64: an 8x8 token grid, masks upsampled to 64x64, and
    the counted multiply-adds include the head's decoder (a second layer adds exactly its cost)."""
    clip = ClipAtInference("c2s-test-vit", 64, head_layers=1).eval()
    x, text = torch.randn(2, 3, 64, 64), torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)
    with torch.no_grad():
        assert clip(x, text).shape == (2, 5, 64, 64)
    tokens = torch.randn(1, 64, 64)
    one = count(LightHead(64, 1, 2), (tokens, text, (8, 8)))
    two = count(LightHead(64, 2, 2), (tokens, text, (8, 8)))
    params, flops = count(clip, (x[:1], text))
    assert params == sum(p.numel() for p in clip.parameters())
    assert flops > one[1] and two[1] > one[1] and (two[1] - one[1]) < one[1]


def test_clip_flops_are_per_image_like_the_students(capsys):
    """--batch 2 reports the same per-image GFLOPs as --batch 1 for both sides of the comparison (a batch-16
    run on an H200 once printed the CLIP pipeline's count for the whole batch next to per-image students)."""
    runs = []
    for batch in ("1", "2"):
        assert main(["--quick", "--repeats", "1", "--batch", batch]) == 0
        runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert runs[1]["batch"] == 2
    assert runs[1]["clip_pipeline"]["flops"] == runs[0]["clip_pipeline"]["flops"] > 0
    assert runs[1]["students"]["segformer_tiny"]["flops"] == runs[0]["students"]["segformer_tiny"]["flops"]
