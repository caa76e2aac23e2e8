"""A toy world declared as a dataset YAML trains, evaluates and predicts (integration: the session's local Ray).

The file is passed by a RELATIVE path from another working directory than the Ray workers': the preflight
makes it absolute, so the workers' pipeline and the rank-0 evaluator open the same file. The training text
holds the seen classes only (the inductive rule), the evaluation table all of them, named from the file.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import yaml

from c2s import evaluate
from c2s.config import load_config
from c2s.train.checkpoint import latest_checkpoint, load_state
from c2s.train.trainer import run_training
from c2s.world.classes import TOY_CLASSES, TOY_UNSEEN
from c2s.world.generate import generate_world

pytestmark = pytest.mark.integration


def toy_yaml(path):
    path.write_text(yaml.safe_dump({
        "name": "mytoy", "classes": list(TOY_CLASSES), "unseen": list(TOY_UNSEEN),
        "layout": {"img_dir": {"train": "img_dir/train", "val": "img_dir/val"},
                   "ann_dir": {"train": "ann_dir/train", "val": "ann_dir/val"},
                   "img_suffix": ".png", "seg_map_suffix": ".png"},
        "reduce_zero_label": True}))


def test_yaml_dataset_trains_and_evaluates(ray_local, cache_root, tmp_path, monkeypatch, capsys):
    world = tmp_path / "world"
    generate_world(dict(images_train=16, images_val=4), world)
    toy_yaml(tmp_path / "mytoy.yaml")
    import c2s.teacher.text as text_module

    asked: list[tuple[str, ...]] = []
    real = text_module.text_embeddings

    def recording(teacher, names, *args, **kwargs):
        asked.append(tuple(names))
        return real(teacher, names, *args, **kwargs)

    monkeypatch.setattr(text_module, "text_embeddings", recording)
    monkeypatch.chdir(tmp_path)
    cfg = load_config("toy_tiny", ["data.dataset=mytoy.yaml", f"data.root={world}", "model.pretrained=null",
                                   "train.workers=1", "train.iters=2", "train.checkpoint_interval=2"])
    summary = run_training(cfg, tmp_path / "run")
    assert summary["step"] == 2 and math.isfinite(summary["hIoU"])
    seen = tuple(c for c in TOY_CLASSES if c not in TOY_UNSEEN)
    assert asked == [seen, TOY_CLASSES]  # training text first (seen only), then evaluation text (all)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["dataset"] == str(tmp_path / "mytoy.yaml")
    state = load_state(latest_checkpoint(tmp_path / "run"))
    assert state["seen_text"].shape == (15, 64)
    table = pd.read_parquet(tmp_path / "run" / "final" / "per_class.parquet")
    assert table["class"].tolist() == list(TOY_CLASSES)
    assert table.loc[~table["seen"], "class"].tolist() == [c for c in TOY_CLASSES if c in TOY_UNSEEN]

    monkeypatch.chdir(tmp_path / "world")  # the checkpoint's config holds the absolute path
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray worker's thread count (num_cpus 0.5): the same float sums
    try:
        assert evaluate.main([str(tmp_path / "run"), "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    final = json.loads((tmp_path / "run" / "final" / "metrics.json").read_text())
    assert printed["step"] == 2 and printed["images"] == final["images"] == 4
    for key in ("sIoU", "uIoU", "hIoU"):
        assert printed[key] == pytest.approx(final[key], abs=1e-4), key

    from c2s import predict

    monkeypatch.chdir(tmp_path)  # --dataset by the same relative path
    assert predict.main([str(tmp_path / "run"), str(world / "img_dir" / "val"), "--dataset", "mytoy.yaml",
                         "--out", str(tmp_path / "pred")]) == 0
    summary_line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary_line["images"] == 4 and summary_line["classes"] == list(TOY_CLASSES)
    assert len(list((tmp_path / "pred").glob("*_label.png"))) == 4
