"""Latent embedding generator: variants, masking of padded slots, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from c2s.method.latent import LatentGenerator

D, K, L = 16, 3, 4


def cfg(**kw):
    base = dict(kind="transformer", inputs="both", cls_tokens="both", num_layers=1, num_heads=4, ffn_ratio=2,
                dropout=0.0)
    base.update(kw)
    return base


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(2, K, D, generator=g) * 5
    tokens = F.normalize(torch.randn(2, K, D, generator=g), dim=-1)
    latent_valid = torch.tensor([[True, True, False], [False, False, False]])  # image 1 has no latent class
    glob = F.normalize(torch.randn(2, D, generator=g), dim=-1)
    local = F.normalize(torch.randn(2, L, D, generator=g), dim=-1)
    local_valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    return protos, tokens, latent_valid, glob, local, local_valid


VARIANTS = [(k, i, c) for k, i, c in itertools.product(("none", "mlp", "transformer"),
                                                         ("prototypes", "cls_tokens", "both"),
                                                         ("global", "local", "both"))
            if not (k == "none" and i == "both")]


@pytest.mark.parametrize("kind,inp,cls", VARIANTS)
def test_every_variant_shapes_and_padding(kind, inp, cls):
    torch.manual_seed(0)
    gen = LatentGenerator(cfg(kind=kind, inputs=inp, cls_tokens=cls), D)
    out = gen(*inputs())
    assert out.shape == (2, K, D)
    assert torch.isfinite(out).all()
    assert out[0, 2].abs().sum() == 0 and out[1].abs().sum() == 0  # padded slots are exactly zero


def test_none_returns_normalised_input():
    protos, tokens, lv, glob, local, local_valid = inputs()
    out = LatentGenerator(cfg(kind="none", inputs="prototypes"), D)(protos, tokens, lv, glob, local, local_valid)
    assert torch.allclose(out[0, :2], F.normalize(protos[0, :2], dim=-1), atol=1e-6)
    out = LatentGenerator(cfg(kind="none", inputs="cls_tokens"), D)(protos, tokens, lv, glob, local, local_valid)
    assert torch.allclose(out[0, :2], tokens[0, :2], atol=1e-6)


def test_invalid_memory_slots_do_not_matter():
    torch.manual_seed(0)
    gen = LatentGenerator(cfg(cls_tokens="local"), D).eval()
    protos, tokens, lv, glob, local, local_valid = inputs()
    a = gen(protos, tokens, lv, glob, local, local_valid)
    local2 = local.clone()
    local2[0, 3] = 100.0  # an invalid slot
    b = gen(protos, tokens, lv, glob, local2, local_valid)
    assert torch.allclose(a, b, atol=1e-6)
    local2[0, 0] = 100.0  # a valid slot changes the output
    assert not torch.allclose(a, gen(protos, tokens, lv, glob, local2, local_valid), atol=1e-3)


def test_gradients_reach_generator_and_prototypes():
    torch.manual_seed(0)
    gen = LatentGenerator(cfg(), D)
    protos, tokens, lv, glob, local, local_valid = inputs()
    protos.requires_grad_(True)
    gen(protos, tokens, lv, glob, local, local_valid).square().sum().backward()
    grads = [p.grad for p in gen.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert protos.grad[0, :2].abs().sum() > 0 and torch.isfinite(protos.grad).all()


def test_bad_config_values_name_the_key():
    with pytest.raises(ValueError, match="latent.kind"):
        LatentGenerator(cfg(kind="gru"), D)
    with pytest.raises(ValueError, match="latent.inputs"):
        LatentGenerator(cfg(kind="none", inputs="both"), D)
    with pytest.raises(ValueError, match="latent.num_heads"):
        LatentGenerator(cfg(num_heads=5), D)
    with pytest.raises(ValueError, match="latent.cls_tokens"):
        LatentGenerator(cfg(cls_tokens="all"), D)
