"""Edges of c2s/method/objective.py that mutation testing (``make mutate``) showed no other test pinned down:
every setting reaching the objective as given, the switch-dependent parts, the latent ids' bound, and the batch
checks' messages. A hand-written config (not the repo's presets), so the expected values are this file's.
The settings' own checks (each key's error) are in tests/method/test_objective_settings.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2s.method.objective import C2SObjective, build_objective, classify
from c2s.method.settings import BankSettings, DistillSettings, LatentSettings, LossSettings, SettingsError

D, NS = 8, 3


def config(**over) -> dict:
    """A whole config as C2SObjective reads it: every key of its sections (latent off, so no generator keys)."""
    cfg = {
        "loss": {"tau": 0.5, "alpha": 2.0, "seen_logits": "cos", "beta": 3.0, "w_global": 4.0, "w_local": 5.0,
                 "w_pixel": 6.0, "use_nel": False, "nel_mode": "zegclip", "nel_focal_weight": 7.0,
                 "nel_dice_weight": 8.0, "focal_alpha": 0.3, "focal_gamma": 1.5, "ce_weight": 9.0,
                 "compile": False, "learn_logit_bias": False, "logit_bias_init": 0.0, "distill_schedule": "cosine"},
        "distill": {"enabled": True, "kind": "cosine", "local_candidates": "batch", "local_false_negative_cos": None,
                    "global_pool": "paper", "global_attn_tau": 0.07},
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


def test_every_setting_is_read_as_given():
    obj = build_objective(config(), text())
    loss, distill = obj.loss, obj.distill
    assert (loss.tau, loss.alpha, loss.seen_logits, loss.beta) == (0.5, 2.0, "cos", 3.0)
    assert (loss.w_global, loss.w_local, loss.w_pixel, loss.use_nel, loss.nel_mode) == (4.0, 5.0, 6.0, False, "zegclip")
    assert (loss.nel_focal_weight, loss.nel_dice_weight, loss.focal_alpha, loss.focal_gamma, loss.ce_weight) == \
        (7.0, 8.0, 0.3, 1.5, 9.0)
    assert (loss.distill_schedule, obj.distill_scale) == ("cosine", 1.0)  # 1 until the loop sets the progress
    assert (distill.enabled, distill.kind, obj.latent.enabled, obj.k_max) == (True, "cosine", False, 4)
    assert (distill.global_pool, distill.global_attn_tau, distill.local_candidates) == ("paper", 0.07, "batch")
    assert distill.local_false_negative_cos is None and (distill.froster_hidden, distill.froster_alpha) == (None, None)
    assert (obj.num_seen, obj.dim, obj.bank.size, obj.bank.dim) == (NS, D, 2, D)
    assert obj.generator is None and obj.projector is None and obj.logit_bias is None
    assert obj.seen_text.dtype == torch.float32 and "seen_text" not in obj.state_dict()
    assert obj.check_ids and not build_objective(config(), text(), check_ids=False).check_ids


def test_switch_dependent_parts_as_given():
    obj = build_objective(config(**{"loss.nel_mode": "present", "loss.learn_logit_bias": True,
                                    "loss.logit_bias_init": -2.5, "distill.global_pool": "cosine",
                                    "distill.global_attn_tau": 0.2, "distill.local_candidates": "image",
                                    "distill.local_false_negative_cos": 1}), text())
    assert obj.loss.nel_mode == "present" and obj.logit_bias.item() == -2.5
    assert isinstance(obj.logit_bias, torch.nn.Parameter) and any(p is obj.logit_bias for p in obj.parameters())
    assert (obj.distill.global_pool, obj.distill.global_attn_tau, obj.distill.local_candidates) == \
        ("cosine", 0.2, "image")
    assert obj.distill.local_false_negative_cos == 1.0 and isinstance(obj.distill.local_false_negative_cos, float)
    froster = build_objective(config(**{"distill.kind": "froster", "distill.froster_hidden": 5,
                                        "distill.froster_alpha": 0.7}), text())
    assert froster.projector.alpha == 0.7 and froster.projector.fc1.out_features == 5
    # the generator's keys are read with latent.enabled only
    latent = {"enabled": True, "kind": "mlp", "inputs": "prototypes", "cls_tokens": "global", "num_layers": 1,
              "num_heads": 1, "ffn_ratio": 2, "dropout": 0.0}
    cfg = config()
    cfg["latent"] = latent
    gen = build_objective(cfg, text()).generator
    assert (gen.kind, gen.inputs, gen.cls_tokens, gen.mlp[0].out_features) == ("mlp", "prototypes", "global", 2 * D)


def test_built_from_the_settings_without_a_whole_config():
    """predict, the benches and the tests build the objective from the dataclasses: the same module as the
    factory's (parameters drawn in the same order: the same weights under one seed)."""
    cfg = config(**{"distill.kind": "froster", "distill.froster_hidden": 5, "distill.froster_alpha": 0.1,
                    "loss.learn_logit_bias": True})
    torch.manual_seed(3)
    from_cfg = build_objective(cfg, text())
    torch.manual_seed(3)
    direct = C2SObjective(text(), loss=LossSettings.from_config(cfg["loss"]), distill=DistillSettings(
        enabled=True, kind="froster", local_candidates="batch", local_false_negative_cos=None, global_pool="paper",
        global_attn_tau=0.07, froster_hidden=5, froster_alpha=0.1), bank=BankSettings(size=2),
        latent=LatentSettings(enabled=False), k_max=4)
    assert direct.distill == from_cfg.distill and direct.loss == from_cfg.loss
    assert direct.check_ids  # the constructor checks ids unless told not to, as the factory does
    assert [k for k, _ in direct.named_parameters()] == [k for k, _ in from_cfg.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(), from_cfg.state_dict().values()))
    with pytest.raises(SettingsError, match=r"^mining.k_max: expected a whole number >= 1, got 0$"):
        C2SObjective(text(), loss=direct.loss, distill=direct.distill, bank=BankSettings(size=2),
                     latent=LatentSettings(enabled=False), k_max=0)
    with pytest.raises(ValueError, match=r"^seen_text must be \(Ns, D\), got shape \(3, 8, 1\)$"):
        build_objective(config(), text()[..., None])


def test_latent_ids_must_fit_below_the_ignore_index():
    latent = {"enabled": True, "kind": "none", "inputs": "prototypes", "cls_tokens": "global", "num_layers": 1,
              "num_heads": 1, "ffn_ratio": 1, "dropout": 0.0}
    cfg = config(**{"mining.k_max": 255 - NS})
    cfg["latent"] = dict(latent)
    assert build_objective(cfg, text()).generator is not None  # ids up to 254: fine
    cfg["mining"]["k_max"] = 256 - NS
    with pytest.raises(SettingsError, match=rf"^mining.k_max: {NS} seen classes \+ mining.k_max={256 - NS} latent "
                                            r"ids collide with the ignore index 255$"):
        build_objective(cfg, text())
    off = config(**{"mining.k_max": 300})
    assert build_objective(off, text()).k_max == 300  # without latent classes the ids never reach the mask


def batch(b: int = 2, hw: int = 4, slots: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, NS, (b, hw, hw), generator=g)
    return {"label": label, "pseudo_mask": label.clone(), "global": torch.randn(b, D, generator=g),
            "local": torch.randn(b, slots, D, generator=g), "local_ids": torch.arange(slots).repeat(b, 1),
            "local_valid": torch.ones(b, slots, dtype=torch.bool)}


def test_batch_checks_name_key_shape_and_ids():
    obj = build_objective(config(), text())
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
    obj = build_objective(config(**{"distill.enabled": False}), text())
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
    distill = build_objective(config(), text())  # distillation reads the pseudo mask's regions
    baseline = build_objective(config(**{"distill.enabled": False}), text())
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


def test_check_batch_ids_reads_only_the_masks_the_switches_use():
    """A pseudo mask beside a baseline's labels is not read, so not checked; nor are the labels of a run
    whose pixel target is the pseudo mask (latent on: its label may hold anything the loader kept)."""
    baseline = build_objective(config(**{"distill.enabled": False}), text())
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    wild = torch.full((1, 4, 4), NS + 99)
    baseline.check_batch_ids({"label": label, "pseudo_mask": wild})
    latent = build_objective(config(**{"distill.enabled": False, "latent.enabled": True, "latent.kind": "mlp",
                                       "latent.inputs": "prototypes", "latent.cls_tokens": "global",
                                       "latent.num_layers": 1, "latent.num_heads": 2, "latent.ffn_ratio": 2,
                                       "latent.dropout": 0.0}), text())
    latent.check_batch_ids({"label": wild, "pseudo_mask": label})
    with pytest.raises(ValueError, match=rf"^batch\['pseudo_mask'\] holds ids \[{NS + 99}\] "):
        latent.check_batch_ids({"label": label, "pseudo_mask": wild})


def test_an_id_error_lists_the_first_eight_bad_ids():
    obj = build_objective(config(**{"distill.enabled": False}), text())
    label = (NS + torch.arange(16)).view(1, 4, 4)  # 16 ids past the seen classes
    with pytest.raises(ValueError) as err:
        obj.check_batch_ids({"label": label})
    assert str(err.value) == (f"batch['label'] holds ids {list(range(NS, NS + 8))} outside [0, {NS}) and the "
                              "ignore index 255")


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
        obj = build_objective(cfg, F.normalize(torch.randn(seen, dim), dim=-1), check_ids=check_ids).train()
        obj.bank.enqueue(torch.randn(3, dim))  # a partly filled bank: its count is read without a sync
        feats = torch.randn(2, dim, 8, 8, requires_grad=True)
        counter = DispatchCounter()
        with counter:
            obj(feats, batch)["loss"].backward()
        assert counter.syncs == expected and counter.ops > 500


def test_classify_refuses_shapes_and_forms_naming_them():
    feats, text4 = torch.zeros(1, 4, 2, 2), torch.zeros(3, 4)
    for f, t in ((feats, torch.zeros(3, 4, 1)), (torch.zeros(1, 4, 2), text4), (feats, torch.zeros(3, 5))):
        with pytest.raises(ValueError) as err:
            classify(f, t, 1.0)
        assert str(err.value) == ("classify expects feats (B, D, h, w) and text (N, D) with the same D; "
                                  f"got {tuple(f.shape)} and {tuple(t.shape)}")
    with pytest.raises(ValueError, match=r"^loss.seen_logits must be 'dot' or 'cos', got 'dots'$"):
        classify(feats, text4, 1.0, "dots")
