"""The catalog: class counts, the inductive unseen lists, label-id mapping (unit, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from c2s.data.catalog import DATASETS, dataset_names, get_dataset_info
from c2s.world.classes import TOY_CLASSES, is_toy_world


@pytest.mark.parametrize("name, n_classes, n_unseen", [
    ("voc12", 20, 5), ("coco_stuff164k", 171, 15), ("context59", 59, 10), ("toy", 20, 5),
    ("toy_stuff", 21, 5)])
def test_counts(name, n_classes, n_unseen):
    info = get_dataset_info(name)
    assert len(info.classes) == n_classes
    assert len(info.unseen) == n_unseen
    assert len(info.seen_classes) == n_classes - n_unseen
    assert len(set(info.seen_ids) | set(info.unseen_ids)) == n_classes
    assert info.ignore_index == 255


def test_unseen_lists():
    assert get_dataset_info("voc12").unseen == ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
    assert get_dataset_info("voc12").unseen_ids == (15, 16, 17, 18, 19)
    coco = get_dataset_info("coco_stuff164k")
    assert coco.unseen_ids == (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160)
    assert coco.unseen == ("cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors",
                           "cardboard", "clouds", "grass", "playingfield", "river", "road", "tree", "wall-concrete")
    assert set(get_dataset_info("context59").unseen) == {
        "cow", "motorbike", "sofa", "cat", "boat", "fence", "bird", "tvmonitor", "aeroplane", "keyboard"}


def test_voc_background_maps_to_ignore():
    voc = get_dataset_info("voc12")
    raw = np.array([[0, 1, 20, 255]], dtype=np.uint8)
    assert voc.map_raw(raw).tolist() == [[255, 0, 19, 255]]


def test_context_background_to_ignore_coco_identity():
    assert get_dataset_info("context59").map_raw(np.array([0, 1, 59])).tolist() == [255, 0, 58]
    assert get_dataset_info("coco_stuff164k").map_raw(np.array([0, 170, 255])).tolist() == [0, 170, 255]


def test_bad_raw_ids_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"\[21, 40\]"):
        get_dataset_info("voc12").map_raw(np.array([3, 21, 40]))
    assert get_dataset_info("coco_stuff164k").invalid_raw_ids(np.array([171, 3, 200])).tolist() == [171, 200]


def test_to_train_labels_drops_unseen():
    voc = get_dataset_info("voc12")
    label = np.array([0, 14, 15, 19, 255], dtype=np.int64)
    out = voc.to_train_labels(label)
    assert out.tolist() == [0, 14, 255, 255, 255]
    assert out.dtype == np.int64
    coco = get_dataset_info("coco_stuff164k")
    # class 20 (elephant) comes after unseen 19 (cow): its seen index is 19.
    assert coco.to_train_labels(np.array([18, 19, 20])).tolist() == [18, 255, 19]
    assert coco.seen_classes[19] == "elephant"


def test_toy_split_is_compositional():
    toy = get_dataset_info("toy")
    assert toy.classes == TOY_CLASSES
    seen = [c.split() for c in toy.seen_classes]
    for name in toy.unseen:
        colour, shape = name.split()
        assert sum(c == colour for c, _ in seen) >= 2, name
        assert sum(s == shape for _, s in seen) >= 2, name
    assert toy.map_raw(np.array([0, 1, 20])).tolist() == [255, 0, 19]


def test_toy_stuff_labels_the_background_as_a_seen_class():
    toy, stuff = get_dataset_info("toy"), get_dataset_info("toy_stuff")
    assert stuff.classes == (*TOY_CLASSES, "background") and stuff.unseen == toy.unseen
    assert stuff.unseen_ids == toy.unseen_ids  # the 20 object classes keep their ids
    raw = np.array([0, 1, 20, 255])
    assert stuff.map_raw(raw).tolist() == [20, 0, 19, 255]
    assert toy.map_raw(raw).tolist() == [255, 0, 19, 255]
    # Training: background is the last seen class (15 seen objects first), unseen objects -> ignore.
    train = stuff.to_train_labels(stuff.map_raw(np.array([0, 1, 4, 255])))  # 4 -> class 3 "red cross" (unseen)
    assert train.tolist() == [15, 0, 255, 255]
    assert stuff.seen_classes[15] == "background"
    assert is_toy_world("toy") and is_toy_world("toy_stuff") and not is_toy_world("voc12")


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="voc12, coco_stuff164k, context59, toy, toy_stuff"):
        get_dataset_info("cityscapes")
    assert list(DATASETS) == ["voc12", "coco_stuff164k", "context59"]  # built in; the toy world registers its own
    assert dataset_names() == ["voc12", "coco_stuff164k", "context59", "toy", "toy_stuff"]


def test_a_registered_dataset_cannot_shadow_a_built_in_one(monkeypatch):
    """Entry points add datasets (c2s/plugins.py); one that reuses a catalog name is refused by name."""
    from c2s import plugins
    from c2s.data import catalog

    clash = (("mine", (catalog.DATASETS["voc12"],)),)
    monkeypatch.setattr(plugins, "load", lambda group: clash if group == catalog.PLUGIN_GROUP else ())
    with pytest.raises(ValueError, match="entry point c2s.datasets:mine registers dataset 'voc12'"):
        catalog.get_dataset_info("toy")


def test_layout_describes_variants():
    text = get_dataset_info("voc12").layout.describe()
    assert "img_dir/train" in text and "ImageSets/Segmentation/aug.txt" in text


def test_without_entry_points_the_error_says_to_install_c2s(monkeypatch):
    """c2s run from a source tree that was never `pip install`ed has no entry points: the toy world is then
    unknown, and the error says why instead of only listing the built-in names."""
    from c2s import plugins

    monkeypatch.setattr(plugins, "load", lambda group: ())
    with pytest.raises(ValueError, match=r"unknown dataset 'toy'.*no installed package registers c2s.datasets "
                                         r"entries.*pip install -e \."):
        get_dataset_info("toy")
