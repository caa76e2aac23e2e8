"""A dataset declared in one YAML file (c2s/data/custom.py) resolves to the catalog's own DatasetInfo (unit, no Ray).

The toy world declared as a file must behave exactly as the catalog's "toy" entry (same listing, same raw ->
class -> train id tables); every mistake in a file is an error naming the key; the inductive rule holds on the
path training uses (``c2s.train.pipeline.seen_labels``), rebuilt here from the class names alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from c2s.data import custom
from c2s.data.catalog import get_dataset_info, list_split
from c2s.data.check import main as check_main
from c2s.data.custom import DatasetFileError, parse_dataset
from c2s.train.pipeline import seen_labels
from c2s.world.classes import TOY_CLASSES, TOY_UNSEEN
from c2s.world.generate import generate_world

LAYOUT = {"img_dir": {"train": "images/train", "val": "images/val"},
          "ann_dir": {"train": "masks/train", "val": "masks/val"},
          "img_suffix": ".jpg", "seg_map_suffix": ".png", "split": {"train": None, "val": None}}
GOOD = {"name": "mydata", "classes": ["road", "car", "person", "bicycle", "tree"], "unseen": ["bicycle", "car"],
        "layout": LAYOUT, "reduce_zero_label": False, "ignore_index": 255, "templates": "single"}


def toy_yaml(path: Path) -> Path:
    """The toy world (c2s/world/generate.py's mmseg layout) declared as a dataset file."""
    path.write_text(yaml.safe_dump({
        "name": "toy_from_yaml", "classes": list(TOY_CLASSES), "unseen": list(TOY_UNSEEN),
        "layout": {"img_dir": {"train": "img_dir/train", "val": "img_dir/val"},
                   "ann_dir": {"train": "ann_dir/train", "val": "ann_dir/val"},
                   "img_suffix": ".png", "seg_map_suffix": ".png"},
        "reduce_zero_label": True}, sort_keys=False))
    return path


def with_(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    for key, value in changes.items():
        if key.startswith("layout__"):
            data["layout"] = {**data["layout"], key.split("__", 1)[1]: value}
        else:
            data[key] = value
    return data


def test_toy_world_as_a_file_is_the_catalog_toy_entry(tmp_path):
    world = tmp_path / "world"
    generate_world(dict(images_train=6, images_val=3), world)
    info, toy = get_dataset_info(str(toy_yaml(tmp_path / "toy.yaml"))), get_dataset_info("toy")
    assert info.ref == str((tmp_path / "toy.yaml").resolve()) and info.name == "toy_from_yaml"
    assert (info.classes, info.seen_classes, info.unseen_ids) == (toy.classes, toy.seen_classes, toy.unseen_ids)
    every_id = np.arange(256)
    assert np.array_equal(info.valid_raw_ids, toy.valid_raw_ids)
    valid = toy.valid_raw_ids
    assert np.array_equal(info.map_raw(valid), toy.map_raw(valid))
    assert np.array_equal(info.to_train_labels(every_id), toy.to_train_labels(every_id))
    for split, n in (("train", 6), ("val", 3)):
        assert list_split(info, world, split).pairs == list_split(toy, world, split).pairs
        assert len(list_split(info, world, split).pairs) == n


def test_the_issue_example_label_spaces():
    info = parse_dataset(GOOD, "my.yaml")
    assert info.seen_classes == ("road", "person", "tree") and info.unseen_ids == (1, 3)
    # reduce_zero_label false: the file value is the class id; 255 ignore; 5..254 are not classes
    assert info.map_raw(np.array([0, 1, 4, 255])).tolist() == [0, 1, 4, 255]
    assert info.invalid_raw_ids(np.array([0, 5, 254, 255])).tolist() == [5, 254]
    shifted = parse_dataset(with_(reduce_zero_label=True), "my.yaml")
    assert shifted.map_raw(np.array([0, 1, 5, 255])).tolist() == [255, 0, 4, 255]
    assert shifted.invalid_raw_ids(np.array([6])).tolist() == [6]
    other_ignore = parse_dataset(with_(ignore_index=250), "my.yaml")
    assert other_ignore.map_raw(np.array([250, 255, 3])).tolist() == [255, 255, 3]


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_inductive_rule_on_the_training_path(dtype):
    # interior unseen ids (1 and 3), rebuilt from the names alone
    info = parse_dataset(GOOD, "my.yaml")
    expected = np.full(256, 255)
    seen_index = 0
    for class_id, name in enumerate(GOOD["classes"]):
        if name not in GOOD["unseen"]:
            expected[class_id] = seen_index
            seen_index += 1
    ids = np.arange(256, dtype=dtype).reshape(2, 8, 16)
    out = seen_labels({"label": ids.copy(), "image": np.zeros((2, 8, 16, 3), np.uint8)}, info)["label"]
    assert np.array_equal(out.reshape(-1), expected)
    assert out.reshape(-1)[[1, 3]].tolist() == [255, 255]
    # what the training text is built from (c2s.train.resolve.text_embeddings_for: info.seen_classes)
    assert not set(info.seen_classes) & set(GOOD["unseen"])


@pytest.mark.parametrize("data, key, message", [
    (with_(unseen=["bicycle", "boat"]), "unseen", r"\['boat'\] not in classes"),
    (with_(classes=["road", "car", "road"]), "classes", r"duplicate names \['road'\]"),
    (with_(classes=[]), "classes", "the list is empty"),
    (with_(classes=[f"c{i}" for i in range(255)], unseen=[]), "classes", "255 classes; at most 254"),
    (with_(unseen=GOOD["classes"]), "unseen", "no seen class is left"),
    (with_(unseen=["car", "car"]), "unseen", "duplicate names"),
    (with_(name=""), "name", "expected a non-empty name"),
    (with_(templates="many"), "templates", r"expected one of \['single', 'ensemble'\]"),
    (with_(ignore_index=2), "ignore_index", "also the mask value of class 'person'"),
    (with_(ignore_index=300), "ignore_index", "an integer in 0..255"),
    (with_(reduce_zero_label="yes"), "reduce_zero_label", "true or false"),
    (with_(clases=["x"]), "clases", "unknown key"),
    (with_(layout__img_dir={"train": "images/train"}), "layout.img_dir.val", "missing"),
    (with_(layout__ann_dir={"train": "a", "val": "b", "test": "c"}), "layout.ann_dir", r"unknown split\(s\) \['test'\]"),
    (with_(layout__img_dir={"train": "/abs", "val": "v"}), "layout.img_dir.train", "inside data.root"),
    (with_(layout__seg_map_suffix=None), "layout.seg_map_suffix", "expected a file suffix"),
    (with_(layout__split={"train": 3}), "layout.split.train", "a file path or null"),
    (with_(layout__imgdir={}), "layout.imgdir", "unknown key"),
])
def test_every_mistake_names_its_key(data, key, message):
    with pytest.raises(DatasetFileError, match=rf"^my\.yaml: {key}: .*{message}"):
        parse_dataset(data, "my.yaml")


@pytest.mark.parametrize("name", ["voc12", "toy_stuff"])  # built in, and registered by the toy world
def test_a_dataset_file_may_not_take_a_catalog_name(tmp_path, name):
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(with_(name=name)))
    with pytest.raises(DatasetFileError, match=rf"my\.yaml: name: '{name}' is a catalog dataset's name"):
        get_dataset_info(str(path))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(DatasetFileError, match="dataset file 'nope.yaml' does not exist"):
        get_dataset_info("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [a, b\n")
    with pytest.raises(DatasetFileError, match="bad.yaml: not valid YAML"):
        get_dataset_info(str(bad))


def test_edited_file_is_read_again(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert get_dataset_info(str(path)).unseen == ("bicycle", "car")
    path.write_text(yaml.safe_dump(with_(unseen=["tree"], name="mydata2")))
    assert get_dataset_info(str(path)).unseen == ("tree",)


def _pair(root: Path, img: str, mask: str, values: list[int]) -> None:
    for p in (root / img, root / mask):
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6, 3), 90, np.uint8)).save(root / img)
    m = np.zeros((4, 6), np.uint8)
    m.flat[: len(values)] = values
    Image.fromarray(m).save(root / mask)


def test_split_files_list_in_file_order(tmp_path):
    for stem in ("b", "a", "c"):
        _pair(tmp_path, f"images/train/{stem}.jpg", f"masks/train/{stem}.png", [1])
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("c\na\n")
    info = parse_dataset(with_(layout__split={"train": "lists/train.txt", "val": None}), "my.yaml")
    pairs = list_split(info, tmp_path, "train").pairs
    assert [p[0].name for p in pairs] == ["c.jpg", "a.jpg"]


def test_data_check_accepts_a_dataset_file(tmp_path, capsys):
    root = tmp_path / "root"
    _pair(root, "images/train/x.jpg", "masks/train/x.png", [0, 1, 4, 255])
    _pair(root, "images/val/y.jpg", "masks/val/y.png", [2, 3])
    path = tmp_path / "mydata.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert check_main([str(root), "--dataset", str(path), "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"--dataset {path.resolve()}" in out and out.rstrip().endswith("OK: no problems found.")
    assert "train        1       1       1" in out
    # an id outside the declared classes is reported against the file's classes
    _pair(root, "images/val/z.jpg", "masks/val/z.png", [7])
    # 2 workers: the pool's processes resolve the dataset from the file path themselves
    assert check_main([str(root), "--dataset", str(path), "--workers", "2", "--quiet"]) == 1
    assert "z.png: ids [7]" in capsys.readouterr().out


def test_data_check_names_the_key_of_a_missing_folder(tmp_path, capsys):
    root = tmp_path / "root"
    _pair(root, "images/train/x.jpg", "masks/train/x.png", [1])
    (root / "images" / "val").mkdir()
    path = tmp_path / "mydata.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert check_main([str(root), "--dataset", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"mydata.yaml: layout.ann_dir.val: folder {root / 'masks/val'} does not exist" in err


def test_job_preflight_resolves_the_file_and_checks_templates(tmp_path, monkeypatch):
    from c2s.config import load_config
    from c2s.inputs import resolve_inputs

    root = tmp_path / "root"
    for split in ("train", "val"):
        _pair(root, f"images/{split}/x.jpg", f"masks/{split}/x.png", [1])
    (tmp_path / "mydata.yaml").write_text(yaml.safe_dump(GOOD))
    monkeypatch.chdir(tmp_path)
    cfg = load_config("toy_tiny", ["data.dataset=mydata.yaml", "data.root=root", "model.pretrained=null"])
    resolve_inputs(cfg)
    # absolute: Ray workers (another working directory) open the same file and folder
    assert (cfg.data.dataset, cfg.data.root) == (str(tmp_path / "mydata.yaml"), str(root))
    (tmp_path / "ens.yaml").write_text(yaml.safe_dump(with_(templates="ensemble")))
    cfg = load_config("toy_tiny", ["data.dataset=ens.yaml", f"data.root={root}", "model.pretrained=null"])
    with pytest.raises(DatasetFileError, match="templates: 'ensemble', but teacher.templates = 'single'"):
        resolve_inputs(cfg)
    cfg = load_config("toy_tiny", ["data.dataset=ens.yaml", f"data.root={root}", "model.pretrained=null",
                                   "teacher.templates=ensemble"])
    resolve_inputs(cfg)
    (root / "masks" / "val" / "x.png").unlink()
    (root / "masks" / "val").rmdir()
    with pytest.raises(DatasetFileError, match="layout.ann_dir.val: folder .*masks/val does not exist"):
        resolve_inputs(cfg)


def test_cli_prints_a_dataset_file_error_alone(tmp_path, monkeypatch, capsys):
    from c2s.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(with_(unseen=["boat"])))
    assert main(["train", "toy_tiny", "data.dataset=bad.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"c2s train: error: {tmp_path / 'bad.yaml'}: unseen: ['boat'] not in classes "
                   "(--debug shows the traceback)"]


def test_is_dataset_file():
    assert custom.is_dataset_file("a/b.YAML") and custom.is_dataset_file("x.yml")
    assert not custom.is_dataset_file("voc12")
