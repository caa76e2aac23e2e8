"""The toy backbone pretraining (ImageNet analogue): seen-class crops only, keyed cache, resolution of
``model.pretrained="toy"`` and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from c2s.config import load_config
from c2s.data.catalog import get_dataset_info
from c2s.errors import PreflightError
from c2s.inputs import resolve_inputs
from c2s.student import build_student
from c2s.student.weights import load_backbone_weights
from c2s.world.backbone import (
    backbone_dir,
    backbone_key,
    ensure_toy_backbone,
    load_metrics,
    main,
    object_crops,
    pretrain_backbone,
    pretrain_params,
)
from c2s.world.classes import TOY_CLASSES, TOY_COLOURS, TOY_SHAPES
from c2s.world.generate import render_many

TINY_WORLD = dict(images_train=4, images_val=4, max_objects=3)
TINY = dict(steps=3, batch_size=8, pool_images=12, heldout_images=6, crop=32, log_every=1000, threads=1)
MODEL = dict(name="segformer_tiny", embed_dim=32, pretrained=None)


def tiny_cfg(**pretrain_overrides):
    return {"data": {"dataset": "toy", "world": TINY_WORLD}, "toy_backbone": dict(TINY, **pretrain_overrides),
            "model": MODEL}


def test_crops_keep_only_the_filtered_classes_and_label_colour_and_shape():
    samples = render_many(TINY_WORLD, "pretrain", 0, 12)
    unseen = set(get_dataset_info("toy").unseen_ids)
    crops = object_crops(samples, 32, lambda c: c not in unseen)
    n_seen = sum(c not in unseen for s in samples for c in s.classes)
    assert len(crops["class"]) == n_seen > 0
    assert not any(int(c) in unseen for c in crops["class"])
    assert crops["image"].shape == (n_seen, 32, 32, 3) and crops["image"].dtype == torch.uint8
    for cls, shape, colour in zip(crops["class"], crops["shape"], crops["colour"]):
        assert TOY_CLASSES[int(cls)] == f"{TOY_COLOURS[int(colour)]} {TOY_SHAPES[int(shape)]}"
    # an object's crop is centred on it: its centre pixel has the object's colour, not the background's
    s = samples[0]
    x0, y0, x1, y1 = s.boxes[0]
    centre = s.image[(y0 + y1) // 2, (x0 + x1) // 2]
    every = object_crops([s], 32, lambda c: True)
    assert torch.equal(every["image"][0, 16, 16], torch.from_numpy(centre))
    with pytest.raises(ValueError, match="no object"):
        object_crops(samples, 32, lambda c: False)


def test_pretraining_is_deterministic_and_loads_into_the_student():
    state, metrics = pretrain_backbone(TINY_WORLD, MODEL, TINY, log=lambda m: None)
    again, _ = pretrain_backbone(TINY_WORLD, MODEL, TINY, log=lambda m: None)
    assert state.keys() == again.keys()
    assert all(torch.equal(state[k], again[k]) for k in state)
    fresh = build_student(MODEL)
    assert any(not torch.equal(v, fresh.backbone.state_dict()[k]) for k, v in state.items())  # it trained
    # the inductive rule: exactly the seen-class objects of the pool are training data
    unseen = set(get_dataset_info("toy").unseen_ids)
    pool = render_many(TINY_WORLD, "pretrain", 0, TINY["pool_images"])
    assert metrics["train_crops"] == sum(c not in unseen for s in pool for c in s.classes) > 0
    assert metrics["heldout_unseen"]["crops"] > 0  # unseen objects appear only in the held-out report
    assert metrics["steps"] == 3
    for part in ("heldout_seen", "heldout_unseen"):
        crops = metrics[part]["crops"]
        assert crops > 0
        for key in ("shape_acc", "colour_acc"):  # a fraction of the part's own crops, rounded to 4 places
            assert any(metrics[part][key] == round(k / crops, 4) for k in range(crops + 1)), (part, key)


def test_pretraining_learns_shape_and_colour_from_seen_crops():
    """30 steps are enough to beat chance (1/4 shapes, 1/5 colours) by a wide margin on held-out crops; the
    colours of unseen classes were all seen in other combinations, so the colour head transfers to them."""
    pcfg = dict(TINY, steps=30, batch_size=32, pool_images=60, heldout_images=40)
    _, metrics = pretrain_backbone(TINY_WORLD, MODEL, pcfg, log=lambda m: None)
    seen, unseen = metrics["heldout_seen"], metrics["heldout_unseen"]
    assert seen["crops"] >= 50 and unseen["crops"] >= 10
    assert seen["shape_acc"] >= 0.5 and seen["colour_acc"] >= 0.8
    assert unseen["colour_acc"] >= 0.8


def test_cache_is_keyed_atomic_and_resolved_from_the_config(tmp_path):
    cfg = tiny_cfg()
    path = ensure_toy_backbone(cfg, tmp_path, log=lambda m: None)
    assert path.parent == backbone_dir(cfg, tmp_path) and path.is_file()
    assert [p.name for p in (tmp_path / "toy_backbone").iterdir()] == [path.parent.name]  # no temp left
    mtime = path.stat().st_mtime_ns
    assert ensure_toy_backbone(cfg, tmp_path) == path and path.stat().st_mtime_ns == mtime  # cached
    student = build_student(MODEL)
    load_backbone_weights(student.backbone, path)  # strict: every key and shape fits
    assert load_metrics(path)["train_crops"] > 0

    # the key follows what changes the weights, not threads or logging
    world, pcfg, model = cfg["data"]["world"], cfg["toy_backbone"], cfg["model"]
    key = backbone_key(world, pcfg, model)
    assert backbone_key(world, dict(pcfg, threads=2, log_every=5), model) == key
    assert backbone_key(world, dict(pcfg, steps=4), model) != key
    assert backbone_key(dict(world, seed=1), pcfg, model) != key
    assert backbone_key(world, pcfg, dict(model, name="segnext_tiny")) != key
    assert backbone_key(world, pcfg, dict(model, embed_dim=64)) == key  # the head's width is not the backbone's



def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="toy_backbone.stepz.*steps"):
        pretrain_params({"stepz": 3})


def test_resolve_inputs_turns_toy_backbone_into_the_cached_file(tmp_path):
    cfg = load_config("toy_tiny", [f"cache_root={tmp_path}", "model.pretrained=toy:backbone",
                                   *[f"toy_backbone.{k}={v}" for k, v in TINY.items()]])
    resolve_inputs(cfg)
    assert cfg.model.pretrained == str(backbone_dir(cfg, tmp_path) / "backbone.pt")
    build_student(cfg.model)  # loads the resolved file

    with pytest.raises(ValueError, match="model.pretrained='toy:backbone' is a provider reference.*resolve"):
        build_student(dict(MODEL, pretrained="toy:backbone"))
    missing = load_config("toy_tiny", [f"cache_root={tmp_path}", f"model.pretrained={tmp_path}/nope.pth"])
    with pytest.raises(PreflightError, match="model.pretrained.*nope.pth.*does not exist"):
        resolve_inputs(missing)
    teacher = tmp_path / "clip.pt"
    teacher.write_bytes(b"weights")  # any non-empty file passes the teacher preflight (not read here)
    real = load_config("voc12_segformer_b4", [f"data.root={tmp_path}", f"teacher.checkpoint={teacher}",
                                              "model.pretrained=toy:backbone"])
    with pytest.raises(PreflightError, match="model.pretrained = 'toy:backbone' is the toy world's.*voc12"):
        resolve_inputs(real)


def test_the_old_spelling_names_the_new_value(tmp_path):
    cfg = load_config("toy_tiny", [f"cache_root={tmp_path}", "model.pretrained=toy"])
    with pytest.raises(PreflightError, match="model.pretrained = 'toy' is the old spelling; write "
                                             "model.pretrained=toy:backbone"):
        resolve_inputs(cfg)


def test_cli_prints_accuracies_as_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("C2S_CACHE", str(tmp_path))
    args = ["--config", "toy_tiny", *[f"toy_backbone.{k}={v}" for k, v in TINY.items()],
            *[f"data.world.{k}={v}" for k, v in TINY_WORLD.items()]]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["cached"] is False
    # the printed accuracies are those of the weights it trained: recomputed in-process (deterministic)
    cfg = load_config("toy_tiny", args[2:])
    _, metrics = pretrain_backbone(cfg.data.world, cfg.model, cfg.toy_backbone, log=lambda m: None)
    assert first["heldout_seen"] == metrics["heldout_seen"] and first["heldout_unseen"] == metrics["heldout_unseen"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] is True
