"""Edges of c2s/method/latent.py that mutation testing (``make mutate``) showed no other test pinned down: the
exact error texts, the calibrators' sizes and decoder settings, which tensors each variant feeds where (against
the module's own sub-networks wired as the docstring says), and the never-empty attention masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2s.method.latent import LatentGenerator, _never_empty

D, K, L = 8, 3, 4


def cfg(**kw) -> dict:
    return {"kind": "transformer", "inputs": "both", "cls_tokens": "both", "num_layers": 2, "num_heads": 2,
            "ffn_ratio": 3, "dropout": 0.25, **kw}


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(2, K, D, generator=g) * 4
    tokens = torch.randn(2, K, D, generator=g) * 2  # not unit: forward normalises them
    latent_valid = torch.tensor([[True, False, True], [False, False, False]])
    glob = torch.randn(2, D, generator=g)
    local = torch.randn(2, L, D, generator=g)
    local_valid = torch.tensor([[True, False, True, False], [False, False, False, False]])
    return protos, tokens, latent_valid, glob, local, local_valid


def test_error_texts():
    cases = [
        (cfg(kind="gru"), "config key 'latent.kind' must be one of none, mlp, transformer; got 'gru'"),
        (cfg(inputs="pixels"), "config key 'latent.inputs' must be one of prototypes, cls_tokens, both; got 'pixels'"),
        (cfg(cls_tokens="all"), "config key 'latent.cls_tokens' must be one of global, local, both; got 'all'"),
        (cfg(kind="none"), "latent.kind='none' has no calibrator to combine two inputs; set latent.inputs to "
                           "'prototypes' or 'cls_tokens', or latent.kind to mlp/transformer"),
        (cfg(num_heads=3), "config key 'latent.num_heads' must divide the embedding dim 8; got 3"),
        (cfg(num_heads=0), "config key 'latent.num_heads' must divide the embedding dim 8; got 0"),
        (cfg(num_heads=-2), "config key 'latent.num_heads' must divide the embedding dim 8; got -2"),
        (cfg(num_layers=0), "config key 'latent.num_layers' must be >= 1; got 0"),
    ]
    for c, message in cases:
        with pytest.raises(ValueError) as err:
            LatentGenerator(c, D)
        assert str(err.value) == message
    assert len(LatentGenerator(cfg(num_layers=1, num_heads=1), D).decoder.layers) == 1
    assert LatentGenerator(cfg(kind="none", inputs="cls_tokens"), D).kind == "none"


def test_calibrator_sizes_and_decoder_settings():
    mlp = LatentGenerator(cfg(kind="mlp"), D).mlp
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].in_features, mlp[2].out_features) == (2 * D, 3 * D, 3 * D, D)
    assert isinstance(mlp[1], torch.nn.GELU)
    assert LatentGenerator(cfg(kind="mlp", inputs="prototypes"), D).mlp[0].in_features == D
    gen = LatentGenerator(cfg(), D)
    assert (gen.kind, gen.inputs, gen.cls_tokens, gen.dim) == ("transformer", "both", "both", D)
    assert len(gen.decoder.layers) == 2
    layer = gen.decoder.layers[1]
    assert layer.self_attn.num_heads == 2 and layer.self_attn.embed_dim == D and layer.self_attn.batch_first
    assert layer.linear1.out_features == 3 * D and layer.norm_first
    assert layer.dropout.p == 0.25 and layer.activation is F.gelu
    assert not hasattr(LatentGenerator(cfg(kind="none", inputs="prototypes"), D), "decoder")


def test_memory_is_the_chosen_tokens():
    _, _, _, glob, local, local_valid = data()
    g = LatentGenerator(cfg(cls_tokens="global"), D).memory(glob, local, local_valid)
    assert torch.equal(g[0], glob[:, None]) and torch.equal(g[1], torch.ones(2, 1, dtype=torch.bool))
    loc = LatentGenerator(cfg(cls_tokens="local"), D).memory(glob, local, local_valid)
    assert loc[0] is local and loc[1] is local_valid
    both = LatentGenerator(cfg(cls_tokens="both"), D).memory(glob, local, local_valid)
    assert torch.equal(both[0], torch.cat([glob[:, None], local], 1))
    assert both[1].tolist() == [[True, True, False, True, False], [True, False, False, False, False]]


def test_never_empty_unmasks_slot_0_of_empty_rows_only_and_copies():
    valid = torch.tensor([[False, True, False], [False, False, False], [True, False, True]])
    out = _never_empty(valid)
    assert out.tolist() == [[False, True, False], [True, False, False], [True, False, True]]
    assert valid[1].tolist() == [False, False, False]  # the caller's mask is not modified


def reference(gen: LatentGenerator, protos, tokens, latent_valid, glob, local, local_valid):
    """The documented wiring, with the module's own sub-networks."""
    p, t = F.normalize(protos, dim=-1), F.normalize(tokens, dim=-1)
    query = t if gen.inputs == "cls_tokens" else p
    if gen.kind == "none":
        out = query
    elif gen.kind == "mlp":
        out = query + gen.mlp(torch.cat([p, t], -1) if gen.inputs == "both" else query)
    else:
        if gen.inputs == "prototypes":
            mem, mem_valid = p, latent_valid
        else:
            mem, mem_valid = gen.memory(glob, local, local_valid)
        tgt_valid, mem_valid = latent_valid.clone(), mem_valid.clone()
        for v in (tgt_valid, mem_valid):
            v[~v.any(1), 0] = True
        out = gen.decoder(query, mem, tgt_key_padding_mask=~tgt_valid, memory_key_padding_mask=~mem_valid)
    return out * latent_valid[..., None]


@pytest.mark.parametrize("kind, inputs, cls_tokens", [
    ("none", "prototypes", "global"), ("none", "cls_tokens", "global"), ("mlp", "prototypes", "both"),
    ("mlp", "cls_tokens", "both"), ("mlp", "both", "both"), ("transformer", "prototypes", "both"),
    ("transformer", "cls_tokens", "global"), ("transformer", "both", "local"), ("transformer", "both", "both"),
])
def test_each_variant_feeds_the_documented_tensors(kind, inputs, cls_tokens):
    torch.manual_seed(0)
    gen = LatentGenerator(cfg(kind=kind, inputs=inputs, cls_tokens=cls_tokens, dropout=0.0), D).eval()
    if kind == "mlp":  # the residual MLP's last layer is not zero here, so the residual is visible
        torch.nn.init.normal_(gen.mlp[2].weight)
    args = data()
    got = gen(*args)
    assert got.shape == (2, K, D)
    assert torch.allclose(got, reference(gen, *args), atol=1e-5)
    assert got[~args[2]].abs().max() == 0  # padded slots are exactly zero
    assert got[0, 0].abs().max() > 0
    if kind != "none":  # the calibrator changed the input
        assert not torch.allclose(got[0, 0], F.normalize(args[0 if inputs != "cls_tokens" else 1][0, 0], dim=-1))
