"""c2s/method/settings.py: the objective built from typed settings computes what it computed when it read the
config by string (pinned numbers), and a missing or wrong value names its dotted key.

The pins were recorded by :func:`record` with the objective as it was before the settings existed (commit
bfdd616's c2s/method/objective.py, ``C2SObjective(cfg, seen_text)``), fp32 on the CPU, one thread; today's
objective reproduces them bit for bit there. The comparison allows another CPU's kernels 1e-5 relative and
1e-6 absolute: a term near 0 (``loss_global`` at 0.0058) is a difference of log-sum-exps of logits up to
1/tau ~ 14, where float32's spacing is 9.5e-7, so its error is absolute, not relative. Measured on 2026-12-06,
an AVX-512 AMD EPYC gave toy_tiny/present's step-1 ``loss_global`` 6.0e-8 (1.03e-5 relative) off the pin.
Both stay below what a setting moves: the closest two variants' pins of one term are 4.5e-5 apart
(toy_tiny default and present, step-0 ``loss_global``), 45 times the absolute bound.
Re-record (only for an intended change of the numbers): ``.venv/bin/python tests/method/test_objective_settings.py``.
"""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F

from c2s.config import load_config
from c2s.method.objective import build_objective
from c2s.method.settings import (
    BankSettings,
    DistillSettings,
    LatentSettings,
    LossSettings,
    SettingsError,
    objective_settings,
)

NS = 4
# Every key the objective reads, at its value when the pins were recorded: edits of the presets elsewhere do
# not move the pins, a change in how the objective uses a key does.
METHOD = {
    "loss.tau": 0.07, "loss.alpha": 1.0, "loss.seen_logits": "dot", "loss.beta": 10.0, "loss.w_global": 1.0,
    "loss.w_local": 1.0, "loss.w_pixel": 1.0, "loss.use_nel": True, "loss.nel_mode": "zegclip",
    "loss.nel_focal_weight": 100.0, "loss.nel_dice_weight": 1.0, "loss.focal_alpha": 0.25, "loss.focal_gamma": 2.0,
    "loss.ce_weight": 1.0, "loss.compile": False, "loss.learn_logit_bias": True, "loss.logit_bias_init": -4.595,
    "loss.distill_schedule": "constant",
    "distill.enabled": True, "distill.kind": "infonce", "distill.froster_hidden": 512, "distill.froster_alpha": 0.1,
    "distill.local_candidates": "batch", "distill.local_false_negative_cos": 0.95, "distill.global_pool": "cosine",
    "distill.global_attn_tau": 0.07, "latent.enabled": True, "latent.kind": "transformer", "latent.inputs": "both",
    "latent.cls_tokens": "both", "latent.num_layers": 1, "latent.num_heads": 8, "latent.ffn_ratio": 4,
    "latent.dropout": 0.0, "mining.k_max": 8,
}
CONFIGS = {"toy_c2s": {"model.embed_dim": 256, "bank.size": 24}, "toy_tiny": {"model.embed_dim": 64, "bank.size": 12}}
# Each code path of the objective once: Table 4's distillation kinds, NEL's two modes, the local candidates,
# the global pools, the generator's kinds, the logit bias off, the cosine seen logits and the baseline.
VARIANTS = {
    "default": {},
    "froster": {"distill.kind": "froster", "distill.froster_hidden": 32},
    "cosine": {"distill.kind": "cosine"},
    "l2": {"distill.kind": "l2"},
    "present": {"loss.nel_mode": "present", "distill.local_candidates": "image", "distill.global_pool": "paper"},
    "mlp": {"latent.kind": "mlp", "latent.inputs": "prototypes", "distill.local_false_negative_cos": None,
            "loss.learn_logit_bias": False, "loss.seen_logits": "cos"},
    "baseline": {"distill.enabled": False, "latent.enabled": False},
    # every number away from 1 and from the others: a key read for another, or not at all, moves the pins
    "numbers": {"loss.tau": 0.1, "loss.alpha": 1.7, "loss.beta": 8.0, "loss.w_global": 0.7, "loss.w_local": 1.3,
                "loss.w_pixel": 0.9, "loss.nel_focal_weight": 50.0, "loss.nel_dice_weight": 2.0,
                "loss.focal_alpha": 0.3, "loss.focal_gamma": 1.5, "loss.ce_weight": 0.6, "loss.logit_bias_init": -3.0,
                "distill.global_attn_tau": 0.2, "distill.local_false_negative_cos": 0.5, "latent.num_heads": 4,
                "latent.ffn_ratio": 2, "latent.cls_tokens": "local", "mining.k_max": 5},
}
TERMS = ("loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce", "loss", "grad_feats", "grad_params")


def fixed_batch(dim: int, k_max: int, seed: int, b: int = 2, hw: int = 16, slots: int = 5) -> dict:
    """Teacher outputs with ignore rows, a latent quadrant, one latent slot per image and a padded slot."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, NS, (b, hw, hw), generator=g)
    label[:, :2, :] = 255
    pseudo = label.clone()
    pseudo[:, hw // 2:, hw // 2:] = torch.randint(0, k_max, (b, hw // 2, hw // 2), generator=g) + NS
    ids = torch.stack([torch.randperm(NS + k_max, generator=g)[:slots] for _ in range(b)])
    ids[:, 0] = NS
    valid = torch.ones(b, slots, dtype=torch.bool)
    valid[1, -1] = False
    return {"label": label, "pseudo_mask": pseudo, "global": torch.randn(b, dim, generator=g),
            "local": torch.randn(b, slots, dim, generator=g), "local_ids": ids, "local_valid": valid}


def record(build, name: str, variant: dict) -> list[list[float]]:
    """Two training steps' loss terms, ``|dL/dF|`` and the objective's parameters' gradient norm, built by
    ``build(cfg, seen_text)`` from ``load_config(name)`` with the pinned keys (the second step reads the bank)."""
    cfg = load_config(name, {**METHOD, **CONFIGS[name], **variant})
    dim, k_max = int(cfg.model.embed_dim), int(cfg.mining.k_max)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order whatever the machine's cores
    try:
        torch.manual_seed(0)
        obj = build(cfg, F.normalize(torch.randn(NS, dim), dim=-1)).train()
        rows = []
        for step in range(2):
            batch = fixed_batch(dim, k_max, seed=10 + step)
            feats = torch.randn(2, dim, 8, 8, generator=torch.Generator().manual_seed(20 + step), requires_grad=True)
            obj.zero_grad()
            out = obj(feats, batch)
            out["loss"].backward()
            grads = [p.grad.norm() for p in obj.parameters() if p.grad is not None]
            rows.append([float(out[k].detach()) for k in TERMS[:6]]
                        + [float(feats.grad.norm()), float(torch.stack(grads).norm()) if grads else 0.0])
        return rows
    finally:
        torch.set_num_threads(threads)


# (config, variant) -> per step: loss_global, loss_local, loss_pixel, loss_nel, loss_ce, loss, |dL/dF|, |dL/dθ|
PINS = {
    ('toy_c2s', 'default'): [
        [0.006289209704846144, 2.527843713760376, 13.409465789794922, 11.230985641479492,
         2.1784799098968506, 15.943598747253418, 0.3174760341644287, 3.716979503631592],
        [0.027632880955934525, 2.2044925689697266, 13.780019760131836, 11.80821418762207,
         1.9718059301376343, 16.01214599609375, 0.31887319684028625, 3.5518672466278076],
    ],
    ('toy_c2s', 'froster'): [
        [1.418832778930664, 2.0315611362457275, 13.296026229858398, 11.169611930847168,
         2.1264140605926514, 16.74641990661621, 0.20569084584712982, 4.035183429718018],
        [1.3552855253219604, 1.9246270656585693, 13.774340629577637, 11.782039642333984,
         1.992301106452942, 17.05425262451172, 0.21105028688907623, 3.4452919960021973],
    ],
    ('toy_c2s', 'cosine'): [
        [0.7094164490699768, 1.0157804489135742, 13.409465789794922, 11.230985641479492,
         2.1784799098968506, 15.134662628173828, 0.18317760527133942, 3.716979503631592],
        [0.6776427030563354, 0.9623135328292847, 13.780019760131836, 11.80821418762207,
         1.9718059301376343, 15.419976234436035, 0.1925121247768402, 3.5518672466278076],
    ],
    ('toy_c2s', 'l2'): [
        [0.9028459191322327, 1.189469575881958, 13.409465789794922, 11.230985641479492,
         2.1784799098968506, 15.501781463623047, 0.17703892290592194, 3.716979503631592],
        [0.846648633480072, 1.1412253379821777, 13.780019760131836, 11.80821418762207,
         1.9718059301376343, 15.76789379119873, 0.18769918382167816, 3.5518672466278076],
    ],
    ('toy_c2s', 'present'): [
        [0.0059204790741205215, 1.8506090641021729, 16.843454360961914, 14.6649751663208,
         2.1784799098968506, 18.699983596801758, 0.3295355439186096, 4.768143177032471],
        [0.025610467419028282, 1.6782326698303223, 18.328960418701172, 16.357154846191406,
         1.9718059301376343, 20.03280258178711, 0.3495025932788849, 4.837339878082275],
    ],
    ('toy_c2s', 'mlp'): [
        [0.006289209704846144, 2.527843713760376, 23.90399932861328, 21.979677200317383,
         1.9243212938308716, 26.438133239746094, 0.9450827240943909, 15.502887725830078],
        [0.027632880955934525, 2.2044925689697266, 21.613351821899414, 19.72708511352539,
         1.8862675428390503, 23.845478057861328, 0.8272114396095276, 13.111892700195312],
    ],
    ('toy_c2s', 'baseline'): [
        [0.0, 0.0, 27.232667922973633, 25.667190551757812,
         1.5654771327972412, 27.232667922973633, 0.3169499635696411, 5.833337306976318],
        [0.0, 0.0, 26.518699645996094, 24.97321319580078,
         1.5454868078231812, 26.518699645996094, 0.31847018003463745, 5.857915878295898],
    ],
    ('toy_c2s', 'numbers'): [
        [0.6606746912002563, 2.660761833190918, 7.584774971008301, 6.227294921875,
         1.3574802875518799, 10.747759819030762, 0.38152503967285156, 2.146479606628418],
        [1.0289939641952515, 2.3580973148345947, 7.913083553314209, 6.723343849182129,
         1.1897398233413696, 10.907597541809082, 0.41012364625930786, 1.6386244297027588],
    ],
    ('toy_tiny', 'default'): [
        [0.0003813001967500895, 4.48866605758667, 13.231749534606934, 11.063238143920898,
         2.1685116291046143, 17.720796585083008, 0.6983866095542908, 3.707900285720825],
        [0.0046631223522126675, 3.4163973331451416, 13.933819770812988, 11.857831001281738,
         2.075989007949829, 17.354881286621094, 0.625522255897522, 3.596195936203003],
    ],
    ('toy_tiny', 'froster'): [
        [0.8896417617797852, 2.0739614963531494, 13.374363899230957, 11.231607437133789,
         2.142756462097168, 16.337966918945312, 0.293107271194458, 3.6937108039855957],
        [0.9124382734298706, 1.9947270154953003, 13.930134773254395, 11.858028411865234,
         2.0721065998077393, 16.837299346923828, 0.2772665321826935, 3.6659088134765625],
    ],
    ('toy_tiny', 'cosine'): [
        [0.44482091069221497, 1.0369806289672852, 13.231749534606934, 11.063238143920898,
         2.1685116291046143, 14.713550567626953, 0.23497223854064941, 3.707900285720825],
        [0.4562191367149353, 0.9973635077476501, 13.933819770812988, 11.857831001281738,
         2.075989007949829, 15.387402534484863, 0.24145875871181488, 3.596195936203003],
    ],
    ('toy_tiny', 'l2'): [
        [0.6670073866844177, 1.2117972373962402, 13.231749534606934, 11.063238143920898,
         2.1685116291046143, 15.110553741455078, 0.2196161299943924, 3.707900285720825],
        [0.536591112613678, 1.1591557264328003, 13.933819770812988, 11.857831001281738,
         2.075989007949829, 15.629566192626953, 0.234122633934021, 3.596195936203003],
    ],
    ('toy_tiny', 'present'): [
        [0.0004261063877493143, 3.4642281532287598, 16.604942321777344, 14.436430931091309,
         2.1685116291046143, 20.069597244262695, 0.7337276339530945, 4.756143569946289],
        [0.005799716338515282, 2.7813920974731445, 18.501155853271484, 16.425167083740234,
         2.075989007949829, 21.288347244262695, 0.6715686917304993, 4.914914608001709],
    ],
    ('toy_tiny', 'mlp'): [
        [0.0003813001967500895, 4.48866605758667, 27.463748931884766, 25.43486213684082,
         2.028885841369629, 31.952796936035156, 2.177339553833008, 19.407339096069336],
        [0.0046631223522126675, 3.4163973331451416, 25.858983993530273, 23.848661422729492,
         2.010322093963623, 29.280044555664062, 1.8452757596969604, 14.750314712524414],
    ],
    ('toy_tiny', 'baseline'): [
        [0.0, 0.0, 27.284826278686523, 25.74919319152832,
         1.5356333255767822, 27.284826278686523, 0.3321637809276581, 5.828547477722168],
        [0.0, 0.0, 27.132217407226562, 25.587656021118164,
         1.5445610284805298, 27.132217407226562, 0.33601298928260803, 5.836142539978027],
    ],
    ('toy_tiny', 'numbers'): [
        [0.0026954603381454945, 2.976020574569702, 7.6124372482299805, 6.273702621459961,
         1.33873450756073, 10.721906661987305, 0.5262548923492432, 2.0829622745513916],
        [0.0750739574432373, 3.1184098720550537, 8.280511856079102, 7.039365768432617,
         1.2411459684371948, 11.558944702148438, 0.6123284101486206, 1.5792032480239868],
    ],
}


@pytest.mark.parametrize("name, variant", [(n, v) for n in CONFIGS for v in VARIANTS])
def test_loss_terms_and_gradients_are_pinned(name, variant):
    got = record(build_objective, name, VARIANTS[variant])
    for step, (row, pinned) in enumerate(zip(got, PINS[name, variant])):
        for term, value, want in zip(TERMS, row, pinned):
            assert value == pytest.approx(want, rel=1e-5, abs=1e-6), (name, variant, step, term)


# ----------------------------------------------------------------------------------- each key's error
def sections(**over) -> dict:
    """The sections of the toy preset as plain dicts, with dotted overrides (``None`` deletes the key)."""
    cfg = load_config("toy_tiny")
    out = {s: dict(cfg[s]) for s in ("loss", "distill", "bank", "latent", "mining")}
    for dotted, value in over.items():
        section, key = dotted.split(".")
        if value is None:
            out[section].pop(key, None)
        else:
            out[section][key] = value
    return out


WRONG = [
    ("loss.tau", -1, "expected a positive number, got -1"),
    ("loss.tau", 0.0, "expected a positive number, got 0.0"),
    ("loss.alpha", "1", "expected a positive number, got '1'"),
    ("loss.seen_logits", "dots", "expected one of dot, cos, got 'dots'"),
    ("loss.beta", float("nan"), "expected a positive number, got nan"),
    ("loss.w_global", -0.5, "expected a number >= 0, got -0.5"),
    ("loss.w_pixel", True, "expected a number >= 0, got True"),
    ("loss.use_nel", 1, "expected true or false, got 1"),
    ("loss.nel_mode", "both", "expected one of zegclip, present, got 'both'"),
    ("loss.focal_alpha", 1.5, "expected a number in [0, 1], got 1.5"),
    ("loss.compile", "yes", "expected true or false, got 'yes'"),
    ("loss.logit_bias_init", float("inf"), "expected a finite number, got inf"),
    ("distill.enabled", None, "missing (see c2s/configs/_base_/method.py)"),
    ("distill.kind", "kl", "expected one of infonce, cosine, l2, froster, got 'kl'"),
    ("distill.local_candidates", "all", "expected one of batch, image, got 'all'"),
    ("distill.local_false_negative_cos", 1.01, "expected a cosine in [-1, 1] or None, got 1.01"),
    ("distill.global_pool", "max", "expected one of paper, centered, cosine, got 'max'"),
    ("distill.global_attn_tau", 0, "expected a positive number, got 0"),
    ("bank.size", -1, "expected a whole number >= 0, got -1"),
    ("bank.size", 2.0, "expected a whole number >= 0, got 2.0"),
    ("latent.enabled", "true", "expected true or false, got 'true'"),
    ("latent.kind", "gru", "expected one of none, mlp, transformer, got 'gru'"),
    ("latent.inputs", "all", "expected one of prototypes, cls_tokens, both, got 'all'"),
    ("latent.cls_tokens", "all", "expected one of global, local, both, got 'all'"),
    ("latent.num_layers", 0, "expected a whole number >= 1, got 0"),
    ("latent.num_heads", None, "missing, needed with latent.enabled=true (see c2s/configs/_base_/method.py)"),
    ("latent.ffn_ratio", 1.5, "expected a whole number >= 1, got 1.5"),
    ("latent.dropout", 1.0, "expected a probability in [0, 1), got 1.0"),
    ("mining.k_max", 0, "expected a whole number >= 1, got 0"),
    ("mining.k_max", None, "missing (see c2s/configs/_base_/teacher.py)"),
]


@pytest.mark.parametrize("key, value, expected", WRONG, ids=[f"{k}={v!r}" for k, v, _ in WRONG])
def test_a_wrong_or_missing_value_names_its_key(key, value, expected):
    with pytest.raises(SettingsError) as err:
        objective_settings(sections(**{key: value}))
    assert str(err.value) == f"{key}: {expected}"


def test_every_key_without_a_switch_is_required():
    """Defaults live in the configs (c2s/configs/_base_/method.py), not in the dataclasses."""
    for cls in (LossSettings, DistillSettings, BankSettings, LatentSettings):
        base = sections()[cls.section]
        for key in [f.name for f in fields(cls)]:
            if (cls.section, key) in {("distill", "froster_hidden"), ("distill", "froster_alpha")} or \
                    (cls.section == "latent" and key != "enabled"):
                continue
            with pytest.raises(SettingsError, match=rf"^{cls.section}\.{key}: missing \(see "):
                cls.from_config({k: v for k, v in base.items() if k != key})


def test_switch_dependent_keys_are_read_with_their_switch_only():
    froster = sections(**{"distill.kind": "froster", "distill.froster_hidden": None})
    with pytest.raises(SettingsError, match=r"^distill.froster_hidden: missing, needed with distill.kind=froster "):
        objective_settings(froster)
    infonce = objective_settings(sections(**{"distill.froster_hidden": None, "distill.froster_alpha": None}))
    assert (infonce["distill"].froster_hidden, infonce["distill"].froster_alpha) == (None, None)
    off = objective_settings({**sections(), "latent": {"enabled": False}})["latent"]
    assert off == LatentSettings(enabled=False) and off.kind is None
    with pytest.raises(SettingsError, match=r"^latent.kind: expected one of none, mlp, transformer, got 'gru'$"):
        LatentSettings(enabled=False, kind="gru")  # a key that is there is checked, switch or not
    with pytest.raises(SettingsError, match=r"^latent.inputs: expected prototypes or cls_tokens with "
                                            r"latent.kind=none .*, got 'both'$"):
        objective_settings(sections(**{"latent.kind": "none", "latent.inputs": "both"}))


def test_sections_are_checked_before_their_keys():
    for name in ("loss", "distill", "bank", "latent", "mining"):
        cfg = sections()
        del cfg[name]
        with pytest.raises(SettingsError, match=rf"^{name}: section missing; the objective reads loss, distill, "
                                                r"bank, latent and mining.k_max \(see "):
            objective_settings(cfg)
    with pytest.raises(SettingsError, match=r"^loss: expected a section \(a mapping of keys to values\), got 3$"):
        LossSettings.from_config(3)


def test_the_settings_are_frozen_typed_and_named_as_the_keys():
    """A field per key of the preset's sections (the dotted names sweeps vary); an int is taken for a float."""
    cfg = load_config("toy_tiny")
    settings = objective_settings(cfg)
    for name in ("loss", "distill", "bank", "latent"):
        assert {f.name for f in fields(settings[name])} == set(cfg[name]), name
        for key, value in cfg[name].items():
            assert getattr(settings[name], key) == value, f"{name}.{key}"
    assert settings["k_max"] == cfg.mining.k_max
    with pytest.raises(AttributeError):
        settings["loss"].tau = 1.0
    tau = LossSettings.from_config({**cfg.loss, "tau": 1}).tau
    assert tau == 1.0 and isinstance(tau, float)
    assert re.fullmatch(r"loss.tau: expected a positive number, got -1",
                        str(pytest.raises(SettingsError, LossSettings.from_config, {**cfg.loss, "tau": -1}).value))


if __name__ == "__main__":
    for n in CONFIGS:
        for v in VARIANTS:
            print(f"    ({n!r}, {v!r}): {record(build_objective, n, VARIANTS[v])!r},")
