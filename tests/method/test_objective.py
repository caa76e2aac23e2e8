"""C2SObjective: components, Table 3 switches, padded latent slots, gradients, bank state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from c2s.bench.objective import make_synthetic_batch
from c2s.config import load_config
from c2s.method.losses import PAD_LOGIT, masked_cross_entropy, nel_loss
from c2s.method.objective import build_objective, classify

D, NS, K = 16, 5, 3


def make(overrides: dict | None = None, size: int = 16, seed: int = 0):
    cfg = load_config("toy_c2s", {"latent.num_heads": 4, "latent.ffn_ratio": 2, "mining.k_max": K,
                                  "bank.size": 4, **(overrides or {})})
    torch.manual_seed(seed)
    text = F.normalize(torch.randn(NS, D), dim=-1)
    obj = build_objective(cfg, text)
    batch = make_synthetic_batch(2, size, D, NS, K, seen_regions=2, grid=4, seed=seed)
    feats = torch.randn(2, D, size // 2, size // 2, requires_grad=True)
    return obj, batch, feats


def test_all_components_present_and_total_is_weighted_sum():
    obj, batch, feats = make({"loss.w_global": 2.0, "loss.w_local": 0.5, "loss.w_pixel": 3.0})
    out = obj(feats, batch)
    assert set(out) == {"loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce"}
    assert all(float(out[k].detach()) > 0 for k in out)
    expected = 2.0 * out["loss_global"] + 0.5 * out["loss_local"] + 3.0 * out["loss_pixel"]
    assert torch.allclose(out["loss"], expected)
    assert torch.allclose(out["loss_pixel"], out["loss_nel"] + out["loss_ce"])


@pytest.mark.parametrize("schedule,step,scale", [("constant", 600, 1.0), ("linear", 0, 1.0), ("linear", 600, 0.25),
                                                 ("cosine", 400, 0.5), ("cosine", 800, 0.0)])
def test_distill_schedule_scales_only_the_distillation_terms(schedule, step, scale):
    # hand values: linear 1 - 600/800 = 0.25; cosine (1 + cos(pi/2))/2 = 0.5 and (1 + cos(pi))/2 = 0
    obj, batch, feats = make({"loss.w_global": 2.0, "loss.w_local": 0.5, "loss.w_pixel": 3.0,
                              "loss.distill_schedule": schedule})
    obj.set_progress(step, 800)
    assert obj.distill_scale == pytest.approx(scale, abs=1e-12)
    out = obj(feats, batch)
    expected = scale * (2.0 * out["loss_global"] + 0.5 * out["loss_local"]) + 3.0 * out["loss_pixel"]
    assert torch.allclose(out["loss"], expected)
    assert float(out["loss_global"].detach()) > 0 and float(out["loss_local"].detach()) > 0.1  # logged unscaled


def test_distill_schedule_refuses_an_unknown_name_and_a_step_past_the_run():
    with pytest.raises(ValueError, match="loss.distill_schedule: expected one of"):
        make({"loss.distill_schedule": "step"})
    obj, _, _ = make({"loss.distill_schedule": "linear"})
    with pytest.raises(ValueError, match="step 801 of 800"):
        obj.set_progress(801, 800)


@pytest.mark.parametrize("distill,latent", [(False, False), (True, False), (True, True), (False, True)])
def test_table3_switches(distill, latent):
    obj, batch, feats = make({"distill.enabled": distill, "latent.enabled": latent})
    out = obj(feats, batch)
    assert (float(out["loss_global"].detach()) > 0) == distill
    assert (float(out["loss_local"].detach()) > 0) == distill
    assert float(out["loss_ce"].detach()) > 0 and float(out["loss_nel"].detach()) > 0
    assert (obj.generator is not None) == latent
    logits, target = obj.pixel_logits(feats, batch)
    assert logits.shape[1] == NS + (K if latent else 0)
    if not latent:
        assert torch.equal(target, batch["label"])  # latent ids of the pseudo mask are ignored


def test_baseline_needs_only_labels_and_matches_hand_ce():
    obj, batch, feats = make({"distill.enabled": False, "latent.enabled": False, "loss.use_nel": False})
    out = obj(feats, {"label": batch["label"]})
    logits = F.interpolate(classify(feats, obj.seen_text, obj.loss.alpha), size=(16, 16), mode="bilinear",
                           align_corners=False)
    expected = F.cross_entropy(logits, batch["label"], ignore_index=255)
    assert torch.allclose(out["loss_ce"], expected, atol=1e-5)
    assert float(out["loss_nel"]) == 0.0 and torch.allclose(out["loss"], expected, atol=1e-5)


def test_padded_latent_slots_get_no_probability_mass():
    obj, batch, feats = make()
    # drop latent class 2 from image 0 (pseudo mask and local slot): it becomes a padded slot
    pm = batch["pseudo_mask"].clone()
    pm[0][pm[0] == NS + 2] = 255
    batch = {**batch, "pseudo_mask": pm,
             "local_valid": batch["local_valid"] & ~((batch["local_ids"] == NS + 2) & (torch.arange(2) == 0)[:, None])}
    logits, target = obj.pixel_logits(feats, batch)
    probs = logits.softmax(dim=1)
    assert torch.all(logits[0, NS + 2] == PAD_LOGIT)
    assert float(probs[0, NS + 2].max()) == 0.0
    assert bool((logits[0].argmax(0) != NS + 2).all())
    assert float(probs[1, NS + 2].max()) > 0  # image 1 still has latent class 2
    assert not bool((target[0] == NS + 2).any())
    # and no loss term sends gradient into the padded logits (CE: zero probability; NEL: absent class)
    leaf = logits.clone().requires_grad_(True)
    focal, dice = nel_loss(leaf, target)
    (masked_cross_entropy(leaf, target) + 100 * focal + dice).backward()
    assert float(leaf.grad[0, NS + 2].abs().max()) == 0.0
    assert float(leaf.grad[1, NS + 2].abs().max()) > 0


@pytest.mark.parametrize("slot", range(K))
def test_latent_ids_without_token_become_ignore(slot):
    """Exactly the pixels of the latent class whose token is gone are ignored: the first slot (id Ns) as the
    others, and no seen pixel with them."""
    obj, batch, feats = make()
    lv = batch["local_valid"] & ~(batch["local_ids"] == NS + slot)
    _, target = obj.pixel_logits(feats, {**batch, "local_valid": lv})
    pseudo = batch["pseudo_mask"]
    assert bool((pseudo == NS + slot).any()) and bool((pseudo < NS).any())
    assert torch.equal(target, torch.where(pseudo == NS + slot, 255, pseudo))


@pytest.mark.parametrize("kind", ["infonce", "cosine", "l2", "froster"])
def test_gradients_reach_student_and_generator_never_teacher(kind):
    obj, batch, feats = make({"distill.kind": kind, "distill.froster_hidden": 8})
    batch = dict(batch)
    batch["global"] = batch["global"].clone().requires_grad_(True)
    batch["local"] = batch["local"].clone().requires_grad_(True)
    out = obj(feats, batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) > 0
    assert batch["global"].grad is None and batch["local"].grad is None
    gen_grads = [p.grad for p in obj.generator.parameters()]
    assert all(g is not None for g in gen_grads) and sum(float(g.abs().sum()) for g in gen_grads) > 0
    if kind == "froster":
        assert float(obj.projector.fc2.weight.grad.abs().sum()) > 0
    assert not obj.seen_text.requires_grad


def test_global_infonce_uses_bank_negatives_and_state_round_trip():
    obj, batch, feats = make()
    obj(feats, batch)
    assert len(obj.bank) == 2  # enqueued after the loss
    first = obj(feats, batch)["loss_global"]  # now 2 batch + 2 bank candidates
    assert len(obj.bank) == 4
    state = obj.state_dict()
    assert {"bank.tokens", "bank.ptr", "bank.count"} <= set(state) and "seen_text" not in state
    other, _, _ = make(seed=0)
    other.load_state_dict(state)
    assert torch.equal(other.bank.get(), obj.bank.get())
    with torch.no_grad():
        assert torch.allclose(other(feats, batch)["loss_global"], obj(feats, batch)["loss_global"])
    # the bank's tokens are negatives of the InfoNCE: the same features and batch against an empty bank and
    # against the restored one (both in eval mode, so neither bank moves) give different losses
    empty, _, _ = make(seed=0)
    empty.eval(), other.eval()
    with torch.no_grad():
        without_bank, with_bank = empty(feats, batch)["loss_global"], other(feats, batch)["loss_global"]
    assert len(empty.bank) == 0 and len(other.bank) == 4
    assert float(with_bank - without_bank) > 0.01  # 4 more negatives only add terms to the denominator
    # eval mode does not touch the bank
    obj.eval()
    before = obj.bank.get().clone()
    obj(feats, batch)
    assert torch.equal(obj.bank.get(), before)
    assert math.isfinite(float(first.detach()))


def test_global_infonce_hand_value_without_bank():
    obj, batch, feats = make({"bank.size": 0, "latent.enabled": False})
    # one image, constant features: F_g = that feature; candidates = the batch's tokens only (1) -> loss 0
    f = torch.ones(1, D, 4, 4)
    b1 = {k: v[:1] for k, v in batch.items()}
    b1 = {**b1, "pseudo_mask": b1["pseudo_mask"][:, :8, :8], "label": b1["label"][:, :8, :8]}
    assert abs(float(obj(f, b1)["loss_global"])) < 1e-6
    # two images: hand InfoNCE over cosines / tau
    f2 = torch.stack([torch.ones(D, 4, 4), -torch.ones(D, 4, 4)])
    b2 = {**batch, "pseudo_mask": batch["pseudo_mask"][:, :8, :8], "label": batch["label"][:, :8, :8]}
    g = b2["global"]
    protos = torch.stack([torch.ones(D), -torch.ones(D)])
    expected = F.cross_entropy(F.normalize(protos, dim=-1) @ g.t() / 0.07, torch.arange(2))
    assert torch.allclose(obj(f2, b2)["loss_global"], expected, atol=1e-5)


def test_global_infonce_hand_value_with_bank_tokens_in_the_denominator():
    """Eq. 2: the keys are [the batch's global tokens; the bank]. With known bank tokens the loss is the
    hand-computed cross-entropy over both; without the bank's columns it would differ."""
    obj, batch, _ = make({"bank.size": 4, "latent.enabled": False})
    f2 = torch.stack([torch.ones(D, 4, 4), -torch.ones(D, 4, 4)])  # constant maps: F_g = that vector
    b2 = {**batch, "pseudo_mask": batch["pseudo_mask"][:, :8, :8], "label": batch["label"][:, :8, :8]}
    g = b2["global"]
    bank = torch.zeros(3, D)
    bank[0, :] = 1.0  # the positive direction of image 0: a hard negative for it
    bank[1, 0] = -2.0
    bank[2, :2] = torch.tensor([3.0, -1.0])
    obj.bank.enqueue(bank, gather=False)
    protos = F.normalize(torch.stack([torch.ones(D), -torch.ones(D)]), dim=-1)
    keys = torch.cat([g, F.normalize(bank, dim=-1)])
    expected = F.cross_entropy(protos @ keys.t() / 0.07, torch.arange(2))
    without_bank = F.cross_entropy(protos @ g.t() / 0.07, torch.arange(2))
    assert float(expected - without_bank) > 1.0  # the hard negative matters
    obj.eval()  # keep the bank fixed for the second call
    assert torch.allclose(obj(f2, b2)["loss_global"], expected, atol=1e-5)
    obj.train()
    assert torch.allclose(obj(f2, b2)["loss_global"], expected, atol=1e-5)  # enqueued after the loss
    assert torch.equal(obj.bank.get()[-2:], g)  # then this step's tokens join the bank


def test_local_candidates_image_vs_batch():
    obj_b, batch, feats = make({"distill.local_candidates": "batch"})
    obj_i, _, _ = make({"distill.local_candidates": "image"})
    lb, li = obj_b(feats, batch)["loss_local"], obj_i(feats, batch)["loss_local"]
    assert float(li.detach()) < float(lb.detach())  # fewer negatives per query


def test_local_false_negative_filter_hand_value():
    # Two images. Image 0: a seen region (class 0, token e2) and a latent region (token e1); image 1: a latent
    # region of the same concept (token e1 again). Prototypes equal their tokens. The paper's Eq. 4 keeps the
    # other image's e1 as a negative of each e1 row; the filter (cosine >= 0.95) drops it.
    e1, e2 = torch.eye(D)[0], torch.eye(D)[1]
    tokens = torch.stack([torch.stack([e2, e1]), torch.stack([e1, torch.zeros(D)])])  # (B=2, L=2, D)
    ids = torch.tensor([[0, NS], [NS, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    t = 1 / 0.07
    literal = make({"distill.local_false_negative_cos": None})[0]
    filtered = make({"distill.local_false_negative_cos": 0.95})[0]
    # rows: e2 (candidates e2, e1, e1), e1 of image 0, e1 of image 1
    want_literal = (math.log(1 + 2 * math.exp(-t)) + 2 * math.log(2 + math.exp(-t))) / 3
    want_filtered = (math.log(1 + 2 * math.exp(-t)) + 2 * math.log(1 + math.exp(-t))) / 3
    got_literal = literal._local_loss(tokens, tokens, ids, valid)
    got_filtered = filtered._local_loss(tokens, tokens, ids, valid)
    assert float(got_literal) == pytest.approx(want_literal, rel=1e-5)
    assert float(got_filtered) == pytest.approx(want_filtered, abs=1e-6)
    assert float(got_literal) > 0.46 and float(got_filtered) < 1e-5  # the duplicate held 2/3 log 2
    with pytest.raises(ValueError, match="distill.local_false_negative_cos"):
        make({"distill.local_false_negative_cos": 1.5})


def test_classify_hand_value():
    feats = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert torch.allclose(classify(feats, text, 2.0).flatten(), torch.tensor([2.0, 4.0, 2 * 2.2]))


def test_errors_name_key_and_expectation():
    obj, batch, feats = make()
    bad = batch["pseudo_mask"].clone()
    bad[0, 0, 0] = NS + K  # beyond k_max
    with pytest.raises(ValueError, match=r"pseudo_mask.*\[8\]"):
        obj(feats, {**batch, "pseudo_mask": bad})
    with pytest.raises(KeyError, match="local_ids"):
        obj(feats, {k: v for k, v in batch.items() if k != "local_ids"})
    with pytest.raises(ValueError, match="distill.kind"):
        make({"distill.kind": "kl"})
    with pytest.raises(ValueError, match=r"student features must be \(B, 16"):
        obj(torch.randn(2, 8, 8, 8), batch)


def test_autocast_does_not_change_precision(monkeypatch):
    """Under an outer bf16 autocast the objective still computes in fp32 with autocast off inside: every
    logit it builds is float32 and the loss is bit-for-bit the fp32 loss (bf16 matmuls would differ)."""
    import c2s.method.objective as objective_module

    obj, batch, feats = make()
    ref = obj(feats, batch)["loss"]
    seen: list[tuple[str, bool, torch.dtype]] = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            first = out[0] if isinstance(out, tuple) else out  # dense_pixel_terms: (ce, focal, dice, count)
            seen.append((name, torch.is_autocast_enabled("cpu"), first.dtype))
            return out
        return wrapped

    for name in ("classify", "info_nce", "global_prototype", "dense_pixel_terms"):
        monkeypatch.setattr(objective_module, name, spy(name, getattr(objective_module, name)))
    obj2, _, _ = make()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = obj2(feats, batch)["loss"]
    assert {name for name, _, _ in seen} == {"classify", "info_nce", "global_prototype", "dense_pixel_terms"}
    assert all(not enabled for _, enabled, _ in seen), seen
    assert all(dtype == torch.float32 for _, _, dtype in seen), seen
    assert out.dtype == torch.float32 and torch.equal(out, ref)
