"""``loss.compile``: the compiled objective computes what the eager one does (values, gradients, the bank).

Inductor compiles C++ on the CPU: these tests need a C++ compiler (skipped, saying so, where there is none).
The GPU counterpart (Triton kernels) is tests/test_gpu.py::test_compiled_objective_on_cuda_matches_eager.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from c2s.bench.objective import make_synthetic_batch
from c2s.config import load_config
from c2s.method.losses import dense_pixel_terms, masked_cross_entropy, nel_terms
from c2s.method.objective import C2SObjective, build_objective

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                       reason="torch.compile on the CPU needs a C++ compiler (g++, c++ or clang++) on PATH"),
]
# The shapes and settings of `c2s bench objective --quick --batch 2` (toy_tiny's objective, 15 seen, k_max 2, a
# 64x64 batch, the student's 16x16 channels_last features): the bench test below then finds these compiled graphs
# in torch's cache instead of compiling its own.
NS, K, D, SIZE, BATCH = 15, 2, 64, 64, 2


def objective(compiled: bool) -> C2SObjective:
    cfg = load_config("toy_tiny", {"loss.compile": compiled, "mining.k_max": K})
    torch.manual_seed(0)  # the same latent generator weights in both
    text = F.normalize(torch.randn(NS, D, generator=torch.Generator().manual_seed(1)), dim=-1)
    return build_objective(cfg, text, check_ids=False).train()


def test_compiled_objective_matches_eager_over_two_steps():
    """Two steps (the second with the bank holding the first's tokens): every loss component within 1e-5
    relative, dL/dF and each of the generator's gradients within 1e-4 (relative norm of the difference), the banks equal."""
    eager, compiled = objective(False), objective(True)
    assert compiled.loss.compile and not eager.loss.compile
    for step in range(2):
        batch = make_synthetic_batch(BATCH, SIZE, D, NS, K, seed=step)
        feats = torch.randn(BATCH, D, SIZE // 4, SIZE // 4, generator=torch.Generator().manual_seed(10 + step))
        feats = feats.contiguous(memory_format=torch.channels_last)  # the layout segformer_tiny's features come in
        outs, grads = [], []
        for obj in (eager, compiled):
            leaf = feats.clone().requires_grad_(True)
            for p in obj.parameters():
                p.grad = None
            out = obj(leaf, batch)
            out["loss"].backward()
            outs.append(out)
            grads.append([leaf.grad] + [p.grad for p in obj.generator.parameters()])
        for key in outs[0]:
            assert torch.allclose(outs[0][key], outs[1][key], rtol=1e-5, atol=1e-7), (step, key)
        assert float(outs[0]["loss_nel"].detach()) > 0 and float(outs[0]["loss_local"].detach()) > 0
        for a, b in zip(*grads):
            assert a is not None and b is not None
            # fused kernels sum in another order: compare each gradient as a whole, not element by element
            assert float((a - b).norm()) <= 1e-4 * float(a.norm()), (step, tuple(a.shape))
        assert torch.equal(eager.bank.tokens, compiled.bank.tokens) and int(compiled.bank.count) == 2 * (step + 1)


def test_compiled_pixel_terms_match_eager_with_ignore_and_padding():
    """dense_pixel_terms compiled whole (fullgraph: no graph break) against the eager CE and NEL sums, with
    ignore pixels, an all-ignore image and a padded class."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 9, 6, 6, generator=g) * 4
    logits[:, 8] = -1.0e4
    target = torch.randint(0, 8, (3, 24, 24), generator=g)
    target[0, :5] = 255
    target[2] = 255
    compiled = torch.compile(dense_pixel_terms, dynamic=False, fullgraph=True)
    leaves = [logits.clone().requires_grad_(True) for _ in range(2)]
    got = compiled(leaves[0], target, 255, 0.25, 2.0, True)
    up = F.interpolate(leaves[1], size=(24, 24), mode="bilinear", align_corners=False)
    want = (masked_cross_entropy(up, target), *nel_terms(up, target))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-5)
    sum(got[:3]).backward()
    sum(want[:3]).backward()
    assert torch.allclose(leaves[0].grad, leaves[1].grad, rtol=1e-4, atol=1e-9)
    assert float(got[3]) == sum(len(t[t != 255].unique()) for t in target)  # the all-ignore image adds none


def test_bench_objective_compile_quick(capsys):
    """`c2s bench objective --compile` runs the compiled objective (torch.compile refuses to run under the
    bench's dispatch modes: the ops are counted on the eager form, CPU memory is reported as not measured)."""
    import json

    from c2s.bench import objective as bench

    assert bench.main(["--quick", "--compile", "--batch", str(BATCH)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["compile"] is True and out["objective_peak_mib"] is None and "not measured" in out["memory_method"]
    assert out["objective_host_syncs"] == 0 and out["objective_ops"] > 300
    assert out["size"] == 64 and out["objective_alone_s"] > 0
