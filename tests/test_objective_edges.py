"""Edges of c2s/method/objective.py that mutation testing (``make mutate``) showed no other test pinned down:
every required config key's exact error, the optional keys' defaults, the validation bounds, and the batch
checks' messages. A hand-written config (not the repo's presets), so the expected values are this file's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2s.method.objective import C2SObjective

D, NS = 8, 3

REQUIRED = {
    "loss": ("tau", "alpha", "seen_logits", "beta", "w_global", "w_local", "w_pixel", "use_nel", "nel_focal_weight",
             "nel_dice_weight", "focal_alpha", "focal_gamma", "ce_weight"),
    "distill": ("enabled", "kind"),
    "bank": ("size",),
    "latent": ("enabled",),
}
METHOD = "(see c2s/configs/_base_/method.py)"


def config(**over) -> dict:
    """The smallest config C2SObjective accepts: required keys only (latent off, so no generator keys)."""
    cfg = {
        "loss": {"tau": 0.5, "alpha": 2.0, "seen_logits": "cos", "beta": 3.0, "w_global": 4.0, "w_local": 5.0,
                 "w_pixel": 6.0, "use_nel": False, "nel_focal_weight": 7.0, "nel_dice_weight": 8.0,
                 "focal_alpha": 0.3, "focal_gamma": 1.5, "ce_weight": 9.0},
        "distill": {"enabled": True, "kind": "cosine"},
        "bank": {"size": 2},
        "latent": {"enabled": False},
        "mining": {"k_max": 4},
    }
    for dotted, value in over.items():
        section, key = dotted.split(".")
        cfg[section][key] = value
    return cfg


def text(n: int = NS) -> torch.Tensor:
    return F.normalize(torch.randn(n, D, generator=torch.Generator().manual_seed(0)), dim=-1)


def test_required_keys_are_read_as_given():
    obj = C2SObjective(config(), text())
    assert (obj.tau, obj.alpha, obj.seen_form, obj.beta) == (0.5, 2.0, "cos", 3.0)
    assert (obj.w_global, obj.w_local, obj.w_pixel, obj.use_nel) == (4.0, 5.0, 6.0, False)
    assert (obj.nel_focal_weight, obj.nel_dice_weight, obj.focal_alpha, obj.focal_gamma, obj.ce_weight) == \
        (7.0, 8.0, 0.3, 1.5, 9.0)
    assert (obj.distill_enabled, obj.distill_kind, obj.latent_enabled, obj.k_max) == (True, "cosine", False, 4)
    assert (obj.num_seen, obj.dim, obj.bank.size, obj.bank.dim) == (NS, D, 2, D)
    assert obj.generator is None and obj.projector is None
    assert obj.seen_text.dtype == torch.float32 and "seen_text" not in obj.state_dict()


def test_optional_keys_defaults():
    obj = C2SObjective(config(), text())
    assert obj.nel_mode == "zegclip" and obj.logit_bias is None
    assert (obj.global_pool, obj.global_attn_tau, obj.local_candidates, obj.local_fn_cos) == \
        ("paper", 0.07, "batch", None)
    froster = C2SObjective(config(**{"distill.kind": "froster", "distill.froster_hidden": 5}), text())
    assert froster.projector is not None and froster.projector.alpha == 0.1
    assert froster.projector.fc1.out_features == 5
    biased = C2SObjective(config(**{"loss.learn_logit_bias": True}), text())
    assert isinstance(biased.logit_bias, torch.nn.Parameter) and biased.logit_bias.item() == 0.0


def test_optional_keys_as_given():
    obj = C2SObjective(config(**{"loss.nel_mode": "present", "loss.learn_logit_bias": True,
                                 "loss.logit_bias_init": -2.5, "distill.global_pool": "cosine",
                                 "distill.global_attn_tau": 0.2, "distill.local_candidates": "image",
                                 "distill.local_false_negative_cos": 1}), text())
    assert obj.nel_mode == "present" and obj.logit_bias.item() == -2.5
    assert (obj.global_pool, obj.global_attn_tau, obj.local_candidates) == ("cosine", 0.2, "image")
    assert obj.local_fn_cos == 1.0 and isinstance(obj.local_fn_cos, float)
    assert C2SObjective(config(**{"distill.local_false_negative_cos": -1.0}), text()).local_fn_cos == -1.0
    froster = C2SObjective(config(**{"distill.kind": "froster", "distill.froster_hidden": 5,
                                     "distill.froster_alpha": 0.7}), text())
    assert froster.projector.alpha == 0.7
    assert C2SObjective(config(**{"loss.learn_logit_bias": False}), text()).logit_bias is None


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in REQUIRED.items() for k in keys])
def test_each_missing_required_key_is_named(section, key):
    cfg = config()
    del cfg[section][key]
    with pytest.raises(KeyError) as err:
        C2SObjective(cfg, text())
    assert err.value.args[0] == f"config key '{section}.{key}' is missing {METHOD}"


def test_missing_sections_and_k_max_and_froster_hidden():
    for section in ("loss", "bank", "distill", "latent"):
        cfg = config()
        del cfg[section]
        with pytest.raises(KeyError) as err:
            C2SObjective(cfg, text())
        assert err.value.args[0] == (f"config section '{section}' is missing; C2SObjective needs loss, bank, distill, "
                                     f"latent and mining.k_max {METHOD}")
    no_key, no_section = config(), config()
    no_key["mining"] = {}
    del no_section["mining"]
    for cfg in (no_key, no_section):
        with pytest.raises(KeyError) as err:
            C2SObjective(cfg, text())
        assert err.value.args[0] == "config key 'mining.k_max' is missing (see c2s/configs/_base_/teacher.py)"
    cfg = config(**{"distill.kind": "froster"})
    with pytest.raises(KeyError) as err:
        C2SObjective(cfg, text())
    assert err.value.args[0] == f"config key 'distill.froster_hidden' is missing {METHOD}"


def test_validation_messages_and_bounds():
    cases = {
        "loss.nel_mode": ("both", "config key 'loss.nel_mode' must be one of zegclip, present; got 'both'"),
        "distill.kind": ("kl", "config key 'distill.kind' must be one of infonce, cosine, l2, froster; got 'kl'"),
        "distill.global_pool": ("max", "config key 'distill.global_pool' must be one of paper, centered, cosine; "
                                       "got 'max'"),
        "distill.local_candidates": ("all", "config key 'distill.local_candidates' must be one of batch, image; "
                                            "got 'all'"),
        "distill.local_false_negative_cos": (1.5, "config key 'distill.local_false_negative_cos' must be a cosine "
                                                  "in [-1, 1] or None; got 1.5"),
        "loss.tau": (0.0, "config key 'loss.tau' must be > 0, got 0.0"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ValueError) as err:
            C2SObjective(config(**{key: value}), text())
        assert str(err.value) == message, key
    with pytest.raises(ValueError, match=r"^config key 'distill.local_false_negative_cos' must be a cosine in "
                                         r"\[-1, 1\] or None; got -1.01$"):
        C2SObjective(config(**{"distill.local_false_negative_cos": -1.01}), text())
    assert C2SObjective(config(**{"loss.tau": 1e-6}), text()).tau == 1e-6
    with pytest.raises(ValueError, match=r"^seen_text must be \(Ns, D\), got shape \(3, 8, 1\)$"):
        C2SObjective(config(), text()[..., None])


def test_latent_ids_must_fit_below_the_ignore_index():
    latent = {"enabled": True, "kind": "none", "inputs": "prototypes", "cls_tokens": "global", "ffn_ratio": 1}
    cfg = config(**{"mining.k_max": 255 - NS})
    cfg["latent"] = dict(latent)
    assert C2SObjective(cfg, text()).generator is not None  # ids up to 254: fine
    cfg["mining"]["k_max"] = 256 - NS
    with pytest.raises(ValueError, match=rf"^{NS} seen classes \+ mining.k_max={256 - NS} latent ids collide with "
                                         r"the ignore index 255$"):
        C2SObjective(cfg, text())
    off = config(**{"mining.k_max": 300})
    assert C2SObjective(off, text()).k_max == 300  # without latent classes the ids never reach the mask


def batch(b: int = 2, hw: int = 4, slots: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NS, (b, hw, hw), generator=g)
    return {"label": label, "pseudo_mask": label.clone(), "global": torch.randn(b, D, generator=g),
            "local": torch.randn(b, slots, D, generator=g), "local_ids": torch.arange(slots).repeat(b, 1),
            "local_valid": torch.ones(b, slots, dtype=torch.bool)}


def test_batch_checks_name_key_shape_and_ids():
    obj = C2SObjective(config(), text())
    feats = torch.randn(2, D, 2, 2)
    good = batch()
    assert set(obj(feats, good)) == {"loss", "loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce"}
    missing = {k: v for k, v in good.items() if k != "global"}
    with pytest.raises(KeyError) as err:
        obj(feats, missing)
    assert err.value.args[0] == ("batch is missing 'global' (needed with distill.enabled=True, latent.enabled=False); "
                                 f"has {sorted(missing)}")
    with pytest.raises(ValueError, match=r"^batch\['local'\] has shape \(2, 2, 5\), expected \(2, '\*', 8\)$"):
        obj(feats, {**good, "local": torch.randn(2, 2, 5)})
    with pytest.raises(ValueError, match=r"^batch\['local_ids'\] has shape \(2, 2, 1\), expected \(2, 2\)$"):
        obj(feats, {**good, "local_ids": good["local_ids"][..., None]})
    # pseudo-mask ids: [0, Ns + k_max) and 255 pass; -1 and Ns + k_max do not
    pm = good["pseudo_mask"].clone()
    pm[0, 0, 0], pm[0, 0, 1] = NS + 4 - 1, 255
    obj(feats, {**good, "pseudo_mask": pm})
    for bad in (-1, NS + 4):
        pm2 = pm.clone()
        pm2[1, 1, 1] = bad
        with pytest.raises(ValueError) as err:
            obj(feats, {**good, "pseudo_mask": pm2})
        assert str(err.value) == f"batch['pseudo_mask'] holds ids [{bad}] outside [0, {NS + 4}) and the ignore index 255"
    with pytest.raises(ValueError, match=r"^student features must be \(B, 8, h, w\), got \(2, 8, 2\)$"):
        obj(torch.randn(2, D, 2), good)


def test_baseline_label_ids_are_checked_against_the_seen_classes():
    obj = C2SObjective(config(**{"distill.enabled": False}), text())
    feats = torch.randn(1, D, 2, 2)
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, 0, 0], label[0, 0, 1] = NS - 1, 255
    obj(feats, {"label": label})
    label[0, 1, 1] = NS
    with pytest.raises(ValueError) as err:
        obj(feats, {"label": label})
    assert str(err.value) == f"batch['label'] holds ids [{NS}] outside [0, {NS}) and the ignore index 255"


def test_check_batch_ids_is_the_forward_check_on_the_host_batch():
    """The training loop validates ids on the host batch (check_batch_ids) and builds the objective with
    check_ids=False, so forward reads no flag off the GPU: the same errors, raised before the copy."""
    distill = C2SObjective(config(), text())  # distillation reads the pseudo mask's regions
    baseline = C2SObjective(config(**{"distill.enabled": False}), text())
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, 0, 0], label[0, 0, 1] = NS - 1, 255
    pseudo = label.clone()
    pseudo[0, 2, 2] = NS + 4 - 1
    distill.check_batch_ids({"label": label, "pseudo_mask": pseudo})
    baseline.check_batch_ids({"label": label})
    pseudo[0, 3, 3] = NS + 4
    with pytest.raises(ValueError) as err:
        distill.check_batch_ids({"label": label, "pseudo_mask": pseudo})
    assert str(err.value) == f"batch['pseudo_mask'] holds ids [{NS + 4}] outside [0, {NS + 4}) and the ignore index 255"
    label[0, 1, 1] = NS
    with pytest.raises(ValueError) as err:
        baseline.check_batch_ids({"label": label})
    assert str(err.value) == f"batch['label'] holds ids [{NS}] outside [0, {NS}) and the ignore index 255"


def test_training_step_of_the_objective_never_waits_for_the_device():
    """With check_ids=False (the training loop's), forward + backward of the full objective at the paper's
    defaults (InfoNCE with the bank, latent generator, NEL in ZegCLIP's mode, CE) dispatches no op that reads a
    value back to the host and no boolean-mask indexing (each a GPU synchronisation: the CPU stops queueing
    kernels until the GPU catches up). Recorded op by op on CPU (c2s.bench.dispatch.DispatchCounter)."""
    from c2s.bench.dispatch import DispatchCounter
    from c2s.bench.objective import make_synthetic_batch
    from c2s.config import load_config

    cfg = load_config("toy_c2s", {"mining.k_max": 3, "bank.size": 4})
    dim, seen = int(cfg.model.embed_dim), 6
    batch = make_synthetic_batch(2, 16, dim, seen, 3, seen_regions=2, grid=4)
    for check_ids, expected in ((False, []), (True, ["_local_scalar_dense"])):
        obj = C2SObjective(cfg, F.normalize(torch.randn(seen, dim), dim=-1), check_ids=check_ids).train()
        obj.bank.enqueue(torch.randn(3, dim))  # a partly filled bank: its count is read without a sync
        feats = torch.randn(2, dim, 8, 8, requires_grad=True)
        counter = DispatchCounter()
        with counter:
            obj(feats, batch)["loss"].backward()
        assert counter.syncs == expected and counter.ops > 500
