"""GPU code paths, on a CUDA device (`make test-gpu`; marker ``gpu``, not in `make test`, which runs on CPU-only
machines): the bf16 training step, the teacher in fp16, and the student's forward on cuda, each against the
same computation in fp32 on the CPU.

Without a CUDA device these tests are skipped with the reason printed (`make test` deselects them anyway).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from c2s.bench.objective import make_synthetic_batch
from c2s.config import load_config
from c2s.method.objective import build_objective
from c2s.student import build_student
from c2s.teacher.clip import load_teacher
from c2s.train.loop import TrainModule
from c2s.train.precision import training_autocast

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make test-gpu)")]

CUDA = torch.device("cuda")


def _student_and_objective(seed: int = 0):
    cfg = load_config("toy_tiny", {"model.pretrained": None})
    torch.manual_seed(seed)
    text = F.normalize(torch.randn(15, int(cfg.model.embed_dim)), dim=-1)
    # eval(): drop-path/dropout draw from the device's own generator, which differs between cpu and cuda
    module = TrainModule(build_student(cfg.model), build_objective(cfg, text)).eval()
    batch = make_synthetic_batch(2, 64, int(cfg.model.embed_dim), 15, int(cfg.mining.k_max), seen_regions=3,
                                 grid=8, seed=seed)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return module, images, batch


def _step(module, images, batch, device, amp: bool):
    """One forward + backward of a copy (the objective's bank fills during a step: each step starts fresh)."""
    module = copy.deepcopy(module).to(device)
    module.zero_grad(set_to_none=True)
    with training_autocast(device, amp):
        out = module(images.to(device), {k: v.to(device) for k, v in batch.items()})
    out["loss"].backward()
    grads = torch.cat([p.grad.flatten().float().cpu() for p in module.parameters() if p.grad is not None])
    return {k: float(v.detach()) for k, v in out.items()}, grads


def test_bf16_training_step_on_cuda_matches_fp32_on_cpu():
    """The worker loop's autocast (bf16 on cuda): losses within 2% of the fp32 CPU step, gradients finite,
    pointing the same way (cosine > 0.98), and the student really ran in bf16 (its conv output dtype)."""
    module, images, batch = _student_and_objective()
    ref, ref_grads = _step(module, images, batch, torch.device("cpu"), amp=False)
    got, grads = _step(module, images, batch, CUDA, amp=True)
    for name in ("loss", "loss_global", "loss_local", "loss_nel", "loss_ce"):
        assert got[name] == pytest.approx(ref[name], rel=2e-2, abs=1e-3), name
    assert torch.isfinite(grads).all()
    assert F.cosine_similarity(grads, ref_grads, dim=0) > 0.98
    with training_autocast(CUDA, True):
        feats = module.to(CUDA).student(images.to(CUDA))
    assert feats.dtype == torch.bfloat16


def test_amp_off_on_cuda_is_fp32_and_equals_cpu():
    module, images, batch = _student_and_objective(seed=1)
    ref, _ = _step(module, images, batch, torch.device("cpu"), amp=False)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    got, _ = _step(module, images, batch, CUDA, amp=False)
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-4)


def test_teacher_fp16_on_cuda_matches_fp32_on_cpu():
    """teacher.precision=auto is fp16 on cuda: global and dense tokens agree with fp32 CPU tokens (cosine)."""
    tcfg = dict(load_config("toy_tiny").teacher)
    gpu, cpu = load_teacher(tcfg, device="cuda"), load_teacher(tcfg, device="cpu")
    assert next(gpu.model.parameters()).dtype == torch.float16
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    g_gpu, g_cpu = gpu.encode_global(images.to(CUDA)).float().cpu(), cpu.encode_global(images)
    assert F.cosine_similarity(g_gpu, g_cpu, dim=-1).min() > 0.999
    d_gpu, d_cpu = gpu.encode_dense(images.to(CUDA)).cpu(), cpu.encode_dense(images)
    assert d_gpu.shape == d_cpu.shape
    assert F.cosine_similarity(d_gpu, d_cpu, dim=1).min() > 0.99


def test_compiled_objective_on_cuda_matches_eager():
    """loss.compile on CUDA (Triton kernels for the logits and the label-size pixel losses): the objective
    alone, two steps, every loss within 1e-5 relative and dL/dF within 1e-4 (relative norm) of eager CUDA."""
    cfg = {"mining.k_max": 3, "bank.size": 4, "latent.num_heads": 4, "latent.ffn_ratio": 2}
    text = F.normalize(torch.randn(7, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    objs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        objs.append(build_objective(load_config("toy_c2s", {**cfg, "loss.compile": compiled}), text,
                                    check_ids=False).to(CUDA).train())
    for step in range(2):
        batch = {k: v.to(CUDA) for k, v in make_synthetic_batch(2, 64, 32, 7, 3, seen_regions=3, grid=8,
                                                                  seed=step).items()}
        feats = torch.randn(2, 32, 32, 32, generator=torch.Generator().manual_seed(10 + step)).to(CUDA)
        outs, grads = [], []
        for obj in objs:
            leaf = feats.clone().requires_grad_(True)
            out = obj(leaf, batch)
            out["loss"].backward()
            outs.append({k: float(v.detach()) for k, v in out.items()})
            grads.append(leaf.grad)
        for key in outs[0]:
            assert outs[1][key] == pytest.approx(outs[0][key], rel=1e-5, abs=1e-7), (step, key)
        assert float((grads[0] - grads[1]).norm()) <= 1e-4 * float(grads[0].norm())
