"""`c2s bench inference --quick` (issue 16, Table 2): the JSON line's figures are consistent with each other
and with the counters they come from (toy student and test CLIP at 64x64; the full-size run is in docs/benchmarks.md)."""

from __future__ import annotations

import json

import torch

from c2s.bench.inference import ClipAtInference, LightHead, count, main


def test_quick_run_json_is_consistent(capsys):
    from c2s.bench.flops import student_complexity

    assert main(["--quick", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "inference" and out["size"] == 64 and out["batch"] == 1 and out["repeats"] == 2
    clip, student = out["clip_pipeline"], out["students"]["segformer_tiny"]
    # images/s = batch / median seconds; the speedup is the ratio of the two. Recomputed from the JSON's rounded
    # values, so the tolerance is the bound that rounding allows (not a guess): under load the student ran at
    # ~1 img/s and a fixed abs=6e-4 was once too tight for the ratio of two 3-decimal numbers.
    for fig in (clip, student):
        assert abs(fig["images_per_s"] - 1 / fig["forward_median_s"]) <= ips_rounding_bound(fig)
    assert abs(student["speedup_vs_clip"] - student["images_per_s"] / clip["images_per_s"]) <= \
        speedup_rounding_bound(student["images_per_s"], clip["images_per_s"])
    # the student's figures are c2s bench flops' counter's
    assert student["flops"] == student_complexity("segformer_tiny", size=64, embed_dim=64)["flops"]
    assert student["paper_gflops"] is None  # no Table 2 row for the toy student
    assert clip["flops"] > 0 and clip["params_m"] > clip["head_params_m"] > 0


HALF_3DP = 5e-4  # round(x, 3)
HALF_6SIG = 5e-5  # a 6-significant-digit number: relative error at most half a unit of its 6th digit (1.00000e-x)


def ips_rounding_bound(fig: dict) -> float:
    """|round(1/m, 3) - 1/m'| where m' is m printed to 6 significant digits."""
    return HALF_3DP + (1 / fig["forward_median_s"]) * HALF_6SIG * 1.01 + 1e-12


def speedup_rounding_bound(ips: float, clip_ips: float) -> float:
    """|round(a/b, 3) - round(a,3)/round(b,3)|, first order in the rounding of a and b (each <= 5e-4)."""
    ratio = ips / clip_ips
    return HALF_3DP + ratio * (HALF_3DP / ips + HALF_3DP / clip_ips) / (1 - HALF_3DP / clip_ips) * 1.01 + 1e-12


def test_rounding_bounds_hold_at_the_load_that_once_failed():
    """A student at ~0.45 img/s and the CLIP pipeline at ~1.5 (a loaded machine): the exact figures, rounded as
    the bench rounds them, stay within the bounds; the old fixed tolerance (abs=6e-4, rel=2e-3) did not."""
    old_failures, worst_margin = 0, float("inf")
    for ips in (0.4475, 0.4478, 0.5004, 0.9995, 1.2345):
        for clip_ips in (1.4996, 1.5005, 2.9995, 7.4995):
            printed_ratio = round(ips / clip_ips, 3)
            recomputed = round(ips, 3) / round(clip_ips, 3)
            err = abs(printed_ratio - recomputed)
            old_failures += err > max(2e-3 * recomputed, 6e-4) + 1e-9
            worst_margin = min(worst_margin, speedup_rounding_bound(round(ips, 3), round(clip_ips, 3)) - err)
    assert old_failures >= 2  # e.g. 0.4478 / 1.5005: off by 6.67e-4 from rounding alone
    assert worst_margin >= 0


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
