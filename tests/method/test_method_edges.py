"""More edges of c2s/method/ (losses.py, objective.py) that mutation testing (``make mutate``) showed no other
test pinned down: default arguments, dtype casts of mixed-precision inputs, the DDP normalisers (faked
``torch.distributed``), odd target ids, fractional areas, the objective's wiring of each config value into the
loss functions, and the profiler labels that ``c2s bench objective --profile`` reports."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from c2s.method import losses as L
from c2s.method.objective import build_objective, classify

D, NS = 8, 3


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_defaults_of_the_loss_functions():
    x, t = torch.randn(2, 3, 4, 4, generator=gen()), (torch.rand(2, 3, 4, 4, generator=gen(1)) > 0.5).float()
    assert torch.equal(L.sigmoid_focal(x, t), L.sigmoid_focal(x, t, 0.25, 2.0))
    assert not torch.allclose(L.sigmoid_focal(x, t), L.sigmoid_focal(x, t, 0.25, 3.0))
    assert not torch.allclose(L.sigmoid_focal(x, t), L.sigmoid_focal(x, t, 0.5, 2.0))
    feats, tok = torch.randn(2, D, 3, 3, generator=gen(2)), torch.randn(2, D, generator=gen(3))
    assert torch.equal(L.global_attention(feats, tok)[0], L.global_attention(feats, tok, "paper")[0])
    assert torch.equal(L.global_prototype(feats, tok, "cosine"), L.global_prototype(feats, tok, "cosine", 0.07))
    assert torch.equal(L.global_attention(feats, tok, "cosine")[0], L.global_attention(feats, tok, "cosine", 0.07)[0])
    # the temperature reaches the attention through global_prototype
    w, flat = L.global_attention(feats, tok, "cosine", 0.5)
    assert torch.allclose(L.global_prototype(feats, tok, "cosine", 0.5), torch.einsum("bl,bdl->bd", w, flat))
    assert not torch.allclose(L.global_prototype(feats, tok, "cosine", 0.5), L.global_prototype(feats, tok, "cosine"))


def test_cosine_attention_hand_value_with_tokens_of_different_norms():
    feats = torch.tensor([[[[3.0, 0.0]], [[4.0, 2.0]]], [[[1.0, 0.0]], [[0.0, 5.0]]]])  # (B=2, D=2, h=1, w=2)
    tok = torch.tensor([[10.0, 0.0], [0.0, 0.5]])
    w, _ = L.global_attention(feats, tok, "cosine", 0.5)
    # image 0: cos((1, 0), (3, 4)/5) = 0.6 and cos((1, 0), (0, 1)) = 0; image 1: 0 and 1 -> softmax(cos / 0.5)
    e = math.exp
    assert torch.allclose(w, torch.tensor([[e(1.2) / (e(1.2) + 1), 1 / (e(1.2) + 1)], [1 / (1 + e(2)), e(2) / (1 + e(2))]]))


def test_mixed_precision_inputs_are_cast_to_the_features_dtype():
    feats, tok = torch.randn(2, D, 3, 3, generator=gen()), torch.randn(2, D, generator=gen(1))
    for pool in L.GLOBAL_POOLS:
        out = L.global_prototype(feats, tok.double(), pool)
        assert out.dtype == torch.float32 and torch.allclose(out, L.global_prototype(feats, tok, pool))
    q, k = torch.randn(3, D, generator=gen(2)), torch.randn(5, D, generator=gen(3))
    pos = torch.tensor([0, 2, 4])
    assert L.info_nce(q, k.double(), pos, 0.1).dtype == torch.float32
    assert torch.allclose(L.info_nce(q, k.double(), pos, 0.1), L.info_nce(q, k, pos, 0.1))
    w = torch.rand(2, 4, 3, 3, generator=gen(4), dtype=torch.float64)
    protos, area = L.masked_mean_prototypes(feats, w)
    assert protos.dtype == torch.float32 and area.dtype == torch.float32


def test_fractional_area_is_divided_by_exactly():
    feats = torch.arange(4.0).view(1, 1, 2, 2) + 1  # values 1, 2, 3, 4
    w = torch.full((1, 1, 2, 2), 0.125)  # a region covering an eighth of each cell: area 0.5
    protos, area = L.masked_mean_prototypes(feats, w)
    assert float(area) == 0.5 and torch.allclose(protos, torch.tensor([[[(1 + 2 + 3 + 4) * 0.125 / 0.5]]]))
    zero, a0 = L.masked_mean_prototypes(feats, torch.zeros(1, 1, 2, 2))
    assert float(a0) == 0 and float(zero.abs().max()) == 0


def test_single_valid_pixel_cross_entropy_is_not_halved():
    logits = torch.randn(1, 3, 2, 2, generator=gen())
    target = torch.full((1, 2, 2), 255)
    target[0, 1, 0] = 2
    want = -F.log_softmax(logits[0, :, 1, 0], 0)[2]
    assert torch.allclose(L.masked_cross_entropy(logits, target), want)


def test_present_pairs_drops_ids_beyond_the_classes_without_spilling_into_the_next_image():
    target = torch.tensor([[[0, 4], [255, 0]], [[1, 1], [1, 255]]])  # image 0 holds id 4 = C + 1 (C = 3)
    img, cls = L._present_pairs(target, 3, 255)
    assert list(zip(img.tolist(), cls.tolist())) == [(0, 0), (1, 1)]  # not (1, 0): 4 is no class of image 1


@pytest.mark.parametrize("mode", L.NEL_MODES)
def test_nel_honours_a_custom_ignore_index(mode):
    logits = torch.randn(2, 3, 4, 4, generator=gen())
    target = torch.randint(0, 3, (2, 4, 4), generator=gen(1))
    as_255 = torch.where(target == 1, torch.full_like(target, 255), target)
    got = L.nel_loss(logits, target, ignore_index=1, mode=mode)
    want = L.nel_loss(logits, as_255, ignore_index=255, mode=mode)
    assert torch.allclose(got[0], want[0]) and torch.allclose(got[1], want[1])
    with pytest.raises(ValueError, match=r"^config key 'loss.nel_mode' must be one of zegclip, present; got 'x'$"):
        L.nel_loss(logits, target, mode="x")


class FakeDist:
    """Two DDP workers whose other worker holds twice this worker's value: all_reduce(sum) triples it."""

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.mul_(3))


def test_world_sum_and_mask_count_under_ddp(monkeypatch):
    FakeDist().install(monkeypatch)
    x = torch.tensor([1.0, 2.0])
    assert L._world_sum(x).tolist() == [3.0, 6.0] and x.tolist() == [1.0, 2.0]  # reduced a copy
    assert L._world_size() == 2
    assert float(L.num_target_masks(torch.tensor(4.0))) == 4 * 3 / 2  # summed, divided by the world
    assert float(L.num_target_masks(torch.tensor(0.0))) == 1.0


def config(**over) -> dict:
    cfg = {
        "loss": {"tau": 0.5, "alpha": 2.0, "seen_logits": "cos", "beta": 3.0, "w_global": 1.5, "w_local": 2.5,
                 "w_pixel": 0.5, "use_nel": True, "nel_mode": "present", "nel_focal_weight": 7.0,
                 "nel_dice_weight": 3.0, "focal_alpha": 0.3, "focal_gamma": 1.5, "ce_weight": 0.75,
                 "compile": False, "learn_logit_bias": False, "logit_bias_init": 0.0, "distill_schedule": "linear"},
        "distill": {"enabled": True, "kind": "cosine", "global_pool": "cosine", "global_attn_tau": 0.3,
                    "local_candidates": "batch", "local_false_negative_cos": None},
        "bank": {"size": 2},
        "latent": {"enabled": False},
        "mining": {"k_max": 2},
    }
    for dotted, value in over.items():
        section, key = dotted.split(".")
        cfg[section][key] = value
    return cfg


def batch(b: int = 2, hw: int = 4) -> dict:
    label = torch.randint(0, NS, (b, hw, hw), generator=gen(5))
    label[0, 0, 0] = 255
    return {"label": label, "pseudo_mask": label.clone(), "global": torch.randn(b, D, generator=gen(6)),
            "local": torch.randn(b, NS, D, generator=gen(7)), "local_ids": torch.arange(NS).repeat(b, 1),
            "local_valid": torch.ones(b, NS, dtype=torch.bool)}


def test_objective_passes_every_loss_setting_to_the_loss_functions():
    text = F.normalize(torch.randn(NS, D, generator=gen(8)), dim=-1)
    obj = build_objective(config(), text)
    feats, bt = torch.randn(2, D, 2, 2, generator=gen(9)), batch()
    out = obj(feats, bt)
    up = F.interpolate(classify(feats, text, 2.0, "cos"), size=(4, 4), mode="bilinear", align_corners=False)
    focal, dice = L.nel_loss(up, bt["label"], 255, 0.3, 1.5, "present")
    assert torch.allclose(out["loss_nel"], 7.0 * focal + 3.0 * dice)
    assert torch.allclose(out["loss_ce"], 0.75 * L.masked_cross_entropy(up, bt["label"]))
    proto = L.global_prototype(feats, bt["global"], "cosine", 0.3)
    assert torch.allclose(out["loss_global"], L.cosine_distill(proto, bt["global"]))
    assert torch.allclose(out["loss"], 1.5 * out["loss_global"] + 2.5 * out["loss_local"]
                          + 0.5 * (out["loss_nel"] + out["loss_ce"]))
    obj.set_progress(3, 4)  # loss.distill_schedule "linear": 1 - 3/4
    late = obj(feats, bt)
    assert torch.allclose(late["loss"], 0.25 * (1.5 * late["loss_global"] + 2.5 * late["loss_local"])
                          + 0.5 * (late["loss_nel"] + late["loss_ce"]))


def test_regions_keep_a_slot_covering_a_fraction_of_one_cell_and_drop_an_absent_one():
    text = F.normalize(torch.randn(NS, D, generator=gen(8)), dim=-1)
    obj = build_objective(config(), text)
    bt = batch(b=1)
    bt["pseudo_mask"] = torch.zeros(1, 4, 4, dtype=torch.long)
    bt["pseudo_mask"][0, 0, 0] = 1  # one label pixel of class 1: a quarter of feature cell (0, 0)
    reg = obj._regions(torch.randn(1, D, 2, 2, generator=gen(9)), bt)
    assert reg["slot_valid"].tolist() == [[True, True, False]]  # class 2 is absent from the mask


def test_every_part_is_labelled_for_the_profiler(monkeypatch):
    """The record_function labels `c2s bench objective --profile` reports, in order (recorded by a stand-in for
    torch.profiler.record_function: the real profiler costs seconds to start, per mutant)."""
    import contextlib

    import c2s.method.objective as objective_module

    labels: list[str] = []

    def record(name):
        labels.append(name)
        return contextlib.nullcontext()

    monkeypatch.setattr(objective_module, "record_function", record)
    text = F.normalize(torch.randn(NS, D, generator=gen(8)), dim=-1)
    build_objective(config(), text)(torch.randn(2, D, 2, 2, generator=gen(9)), batch())
    assert labels == [f"c2s.objective.{p}" for p in ("regions", "global", "local", "logits", "pixel")]


def local_reference(protos, tokens, ids, valid, tau, num_seen, candidates, fn_cos):
    """Eq. 4 by hand: slots in (image, slot) order; for query i the candidates j are its image's slots
    (``image``) or all slots except the same seen class in another image (``batch``); with ``fn_cos``, a
    candidate whose teacher token has cosine >= fn_cos with i's is dropped; i itself always stays."""
    slots = [(b, s) for b in range(valid.shape[0]) for s in range(valid.shape[1]) if valid[b, s]]
    unit = F.normalize(tokens, dim=-1)
    losses = []
    for i, (bi, si) in enumerate(slots):
        q = F.normalize(protos[bi, si], dim=0)
        logits, pos = [], None
        for j, (bj, sj) in enumerate(slots):
            if j != i:
                if candidates == "image" and bj != bi:
                    continue
                if candidates == "batch" and bj != bi and ids[bi, si] == ids[bj, sj] and ids[bi, si] < num_seen:
                    continue
                if fn_cos is not None and float(unit[bi, si] @ unit[bj, sj]) >= fn_cos:
                    continue
            if j == i:
                pos = len(logits)
            logits.append(float(q @ unit[bj, sj]) / tau)
        losses.append(-torch.log_softmax(torch.tensor(logits, dtype=torch.float64), 0)[pos])
    return float(torch.stack(losses).mean())


@pytest.mark.parametrize("candidates, fn", [("batch", None), ("image", None), ("batch", "exact"), ("batch", 0.5)])
def test_local_infonce_against_a_hand_loop(candidates, fn):
    text = F.normalize(torch.randn(NS, D, generator=gen(8)), dim=-1)
    protos = torch.randn(2, 4, D, generator=gen(10))
    tokens = torch.randn(2, 4, D, generator=gen(11))
    tokens[1, 2] = tokens[0, 2] * 2 + 0.1 * tokens[1, 2]  # the same concept (latent id) in both images
    ids = torch.tensor([[0, 1, NS, 2], [0, 2, NS, 1]])  # classes 0, 1 and 2 in both images; 2 twice
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    unit = F.normalize(tokens, dim=-1)
    fn_cos = float(unit[0, 2] @ unit[1, 2]) if fn == "exact" else fn  # exactly at the threshold: dropped
    obj = build_objective(config(**{"distill.kind": "infonce", "distill.local_candidates": candidates,
                                    "distill.local_false_negative_cos": fn_cos}), text)
    got = obj._local_loss(protos, tokens, ids, valid)
    want = local_reference(protos, tokens, ids, valid, 0.5, NS, candidates, fn_cos)
    assert math.isclose(float(got), want, rel_tol=1e-5)


@pytest.mark.parametrize("mode", L.NEL_MODES)
def test_nel_without_any_labelled_pixel_is_zero_dice(mode):
    logits = torch.randn(2, 3, 4, 4, generator=gen(), requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    focal, dice = L.nel_loss(logits, target, mode=mode)
    assert dice.item() == 0.0
    if mode == "present":
        assert focal.item() == 0.0  # no present class: nothing to score
    else:
        assert focal.item() > 0  # every map is a negative everywhere
    (focal + dice).backward()
    assert logits.grad is not None
