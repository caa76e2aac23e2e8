"""The toy CLIP: a seconds-long pretraining beats chance; the cache is keyed, atomic and loadable."""

from __future__ import annotations

import json

import pytest
import torch

from c2s.config import load_config
from c2s.world.clip import (
    DEFAULT_PRETRAIN,
    ensure_toy_teacher,
    load_metrics,
    main,
    pretrain,
    teacher_dir,
    teacher_key,
)

TINY_WORLD = dict(images_train=10, images_val=10, max_objects=3)
TINY = dict(steps=60, batch_size=64, lr=2e-3, warmup_steps=5, pool_images=150, eval_images=60, log_every=1000,
            threads=1)


def tiny_cfg(**pretrain_overrides):
    return {"data": {"world": TINY_WORLD}, "toy_clip": dict(TINY, **pretrain_overrides),
            "teacher": {"arch": "c2s-test-vit"}}


def test_short_pretraining_beats_chance():
    torch.manual_seed(0)
    _, metrics = pretrain(TINY_WORLD, TINY, "c2s-test-vit", log=lambda msg: None)
    chance = 1 / 20
    assert metrics["eval_crops"] > 100
    assert metrics["zero_shot_acc"] > 3 * chance, metrics
    assert set(metrics) >= {"zero_shot_acc", "zero_shot_acc_unseen", "wall_s"}
    # unseen classes were never named in a mask, only in captions: zero-shot still beats chance on them
    assert metrics["zero_shot_acc_unseen"] > 2 * chance, metrics
    # both accuracies are the crop-weighted means of the per-class ones over the held-out objects
    from collections import Counter

    from c2s.world.classes import TOY_CLASSES, TOY_UNSEEN
    from c2s.world.generate import render, world_params

    world = world_params(TINY_WORLD)
    counts = Counter(TOY_CLASSES[c] for i in range(TINY["eval_images"]) for c in render(world, "val", i).classes)
    assert sum(counts.values()) == metrics["eval_crops"] and set(counts) == set(metrics["per_class"])
    for names, key in ((list(counts), "zero_shot_acc"), ([c for c in counts if c in TOY_UNSEEN], "zero_shot_acc_unseen")):
        weighted = sum(counts[c] * metrics["per_class"][c] for c in names) / sum(counts[c] for c in names)
        assert metrics[key] == pytest.approx(weighted, abs=1e-3), key  # per-class values are rounded to 3 places


def test_cache_is_keyed_and_loadable(tmp_path, capsys):
    import open_clip

    from c2s.teacher.archs import register

    cfg = tiny_cfg(steps=3, pool_images=20, eval_images=5)
    path = ensure_toy_teacher(cfg, tmp_path, log=lambda msg: None)
    stamp = path.stat().st_mtime_ns
    assert ensure_toy_teacher(cfg, tmp_path) == path and path.stat().st_mtime_ns == stamp  # cached
    assert path.parent == teacher_dir(cfg, tmp_path)
    other = tiny_cfg(steps=3, pool_images=20, eval_images=5, lr=1e-3)
    assert teacher_dir(other, tmp_path) != path.parent
    assert teacher_dir({**cfg, "data": {"world": dict(TINY_WORLD, seed=1)}}, tmp_path) != path.parent
    assert load_metrics(path)["steps"] == 3
    register()
    model = open_clip.create_model("c2s-test-vit", pretrained=str(path))
    state = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()["logit_scale"], state["logit_scale"])
    assert not [p for p in (tmp_path / "toy_clip").iterdir() if p.name.startswith(".")]


def test_cli_prints_json_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("C2S_CACHE", str(tmp_path))
    overrides = [f"data.world.{k}={v}" for k, v in TINY_WORLD.items()] + [
        "teacher.arch=c2s-test-vit", "toy_clip.steps=2", "toy_clip.pool_images=20", "toy_clip.eval_images=5",
        "toy_clip.threads=1"]
    assert main(overrides) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line)
    assert set(result) >= {"zero_shot_acc", "zero_shot_acc_unseen", "wall_s"}
    assert result["cached"] is False
    assert main(overrides) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] is True


def test_config_lists_every_pretrain_knob():
    cfg = load_config("toy_c2s")
    assert set(cfg.toy_clip) == set(DEFAULT_PRETRAIN)
    # toy_c2s's dataset (toy_stuff) adds background views; every other knob is the default
    assert cfg.data.dataset == "toy_stuff" and cfg.toy_clip.background_frac == 0.1
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.toy_clip.items()} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in {**DEFAULT_PRETRAIN, "background_frac": 0.1}.items()}
    voc_like = load_config("toy_c2s", ["data.dataset=toy", "toy_clip.background_frac=0.0"])
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in voc_like.toy_clip.items()} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in DEFAULT_PRETRAIN.items()}


def test_unknown_pretrain_key_is_an_error():
    with pytest.raises(ValueError, match="toy_clip.epochs"):
        pretrain(TINY_WORLD, dict(epochs=3), "c2s-test-vit")


# The toy CLIP recipe before 2026-12-05 (docs/demo.md): keys hashed from it must stay what they were.
OLD_RECIPE = {"steps": 1500, "batch_size": 64}


def test_device_key_keeps_cpu_keys_and_hashes_other_devices():
    cfg = load_config("toy_c2s")
    world = dict(cfg.data.world)
    # The key of the toy CLIP recipe of that time (1500 steps x 64) before toy_clip.device existed
    # (PRETRAIN_VERSION 2): still the same.
    voc_like = {**cfg.toy_clip, **OLD_RECIPE, "background_frac": 0.0}  # the "toy" dataset's CLIP
    assert teacher_key(world, voc_like, "c2s-toy-vit") == "beb63a7fe7e6be20"
    assert teacher_key(world, {**voc_like, "device": "cpu"}, "c2s-toy-vit") == "beb63a7fe7e6be20"
    cuda = teacher_key(world, {**voc_like, "device": "cuda"}, "c2s-toy-vit")
    assert cuda != "beb63a7fe7e6be20" and len(cuda) == 16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"toy_clip.device = 'cuda', but torch sees no CUDA device"):
        pretrain(TINY_WORLD, dict(steps=1, device="cuda"), "c2s-test-vit")
    with pytest.raises(ValueError, match=r"toy_clip.device = 'gpu0': expected a torch device"):
        pretrain(TINY_WORLD, dict(steps=1, device="gpu0"), "c2s-test-vit")


def test_background_views_blank_objects_and_crop_the_asked_square():
    from c2s.world.clip import _normalise, _Pool, background_views
    from c2s.world.generate import render, world_params

    pool = _Pool([render(world_params(TINY_WORLD), "val", i) for i in range(3)])
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    size = pool.images.shape[-1]
    idx = torch.tensor([0, 2])
    # the whole image at its own size: the normalised image, 0 on every object pixel
    whole = background_views(pool, idx, torch.ones(2), torch.zeros(2, 2), size, mean, std)
    expected = _normalise(pool.images[idx], mean, std)
    objects = (pool.masks[idx] != 0)[:, None].expand_as(expected)
    assert objects.any() and (~objects).any()
    assert torch.all(whole[objects] == 0)
    assert torch.allclose(whole[~objects], expected[~objects], atol=1e-5)
    # half the side at the bottom-right corner, out at half size: that quarter of the image, pixel for pixel
    quarter = background_views(pool, idx, torch.full((2,), 0.5), torch.ones(2, 2), size // 2, mean, std)
    assert torch.allclose(quarter, whole[..., size // 2:, size // 2:], atol=1e-5)


def test_background_frac_trains_and_reports_background_reading():
    torch.manual_seed(0)
    _, metrics = pretrain(TINY_WORLD, dict(TINY, background_frac=0.2), "c2s-test-vit", log=lambda msg: None)
    # 60 steps with 13 background views per batch: the background text is learnt (chance over 21 names: 0.05)
    assert metrics["background_acc"] > 0.5, metrics
    assert metrics["object_as_background"] < 0.2, metrics
    _, plain = pretrain(TINY_WORLD, dict(TINY, steps=1), "c2s-test-vit", log=lambda msg: None)
    assert "background_acc" not in plain  # only measured when the CLIP was taught the background
    with pytest.raises(ValueError, match=r"full_frac \+ masked_frac \+ background_frac must be <= 1"):
        pretrain(TINY_WORLD, dict(TINY, background_frac=0.5), "c2s-test-vit")


def test_background_frac_is_hashed_only_when_used():
    cfg = load_config("toy_c2s")
    world = dict(cfg.data.world)
    old = {**cfg.toy_clip, **OLD_RECIPE}
    assert teacher_key(world, {**old, "background_frac": 0.0}, "c2s-toy-vit") == "beb63a7fe7e6be20"
    with_bg = teacher_key(world, {**old, "background_frac": 0.1}, "c2s-toy-vit")
    assert with_bg != "beb63a7fe7e6be20"
    assert with_bg != teacher_key(world, {**old, "background_frac": 0.2}, "c2s-toy-vit")
    # today's recipe (1000 x 48, docs/demo.md) is a toy CLIP of its own
    assert teacher_key(world, {**cfg.toy_clip, "background_frac": 0.0}, "c2s-toy-vit") != "beb63a7fe7e6be20"


def test_fused_optimizer_takes_the_per_tensor_loops_steps():
    """The fused AdamW (one kernel per step) must move the weights as the per-tensor loop does: 20 steps on
    a decay and a no-decay group (weight decay 0.1 on the first only), within float32 rounding."""
    from c2s.world.clip import pretrain_optimizer

    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(50, 8)), torch.nn.Parameter(torch.randn(8))]
    fused = [torch.nn.Parameter(q.detach().clone()) for q in ref]
    opt_ref = torch.optim.AdamW([{"params": [ref[0]], "weight_decay": 0.1}, {"params": [ref[1]], "weight_decay": 0.0}],
                                lr=1e-2, betas=(0.9, 0.98), foreach=False)
    opt_fused = pretrain_optimizer([fused[0]], [fused[1]], 1e-2, 0.1)
    assert opt_fused.defaults["fused"] is True
    start = [q.detach().clone() for q in ref]
    for step in range(20):
        target = torch.randn(50, 8, generator=torch.Generator().manual_seed(step))
        for params, opt in ((ref, opt_ref), (fused, opt_fused)):
            loss = ((params[0] * params[1] - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for r, f, s in zip(ref, fused, start):
        assert (r - s).abs().max() > 0.05  # the steps are not nothing
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-6)


def test_the_48_px_toy_clip_is_a_config_key_away(tmp_path):
    """``teacher.arch=c2s-toy-vit-48`` makes ``toy:clip`` pretrain, cache and load the 48-px tower (docs/demo.md):
    the default's tower at another input size, under a key of its own, refused by the 64-px architecture."""
    from c2s.teacher.checkpoint import TeacherCheckpointError
    from c2s.teacher.clip import load_teacher
    from c2s.world import providers
    from c2s.world.archs import ARCHS, TOY_CLIP_ARCHS

    assert TOY_CLIP_ARCHS == ("c2s-toy-vit", "c2s-toy-vit-48")
    small, default = ARCHS["c2s-toy-vit-48"], ARCHS["c2s-toy-vit"]
    assert small["vision_cfg"] == {**default["vision_cfg"], "image_size": 48}
    assert {k: v for k, v in small.items() if k != "vision_cfg"} == {k: v for k, v in default.items() if k != "vision_cfg"}
    tiny = [f"data.world.{k}={v}" for k, v in TINY_WORLD.items()] + [
        "toy_clip.steps=2", "toy_clip.batch_size=8", "toy_clip.pool_images=20", "toy_clip.eval_images=5",
        "toy_clip.threads=1"]
    cfg = load_config("toy_c2s", [*tiny, "teacher.arch=c2s-toy-vit-48", "teacher.image_size=48"])
    path = providers.clip(cfg, tmp_path)
    assert path.parent == tmp_path / "toy_clip" / teacher_key(cfg.data.world, cfg.toy_clip, "c2s-toy-vit-48")
    assert path.parent != teacher_dir(load_config("toy_c2s", tiny), tmp_path)
    assert load_metrics(path)["arch"] == "c2s-toy-vit-48"
    state = torch.load(path, weights_only=True)
    assert state["visual.positional_embedding"].shape == (6 * 6 + 1, 96)  # 48 px / patch 8, and the CLS token
    teacher_cfg = {**cfg.teacher, "checkpoint": str(path), "quick_gelu": False}
    teacher = load_teacher(teacher_cfg, device="cpu")
    images = torch.randint(0, 256, (2, 96, 96, 3), dtype=torch.uint8)  # resized to the 48-px input
    assert teacher.image_size == 48 and teacher.encode_global(images).shape == (2, 256)
    with pytest.raises(TeacherCheckpointError, match="image_size 48 vs 64"):
        load_teacher({**teacher_cfg, "arch": "c2s-toy-vit"}, device="cpu")
