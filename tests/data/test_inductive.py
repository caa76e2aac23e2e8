"""The inductive rule (paper Sec. 4.1): no unseen class id ever reaches the training labels.

Checked through the very function the training pipeline maps over its batches
(``c2s.data.labels.seen_labels``, which calls ``DatasetInfo.to_train_labels``; the live pipeline and the token
cache both call it, pinned below), for every catalog dataset, a YAML-declared dataset and the labels of a
generated toy world. The expected mapping is rebuilt here from the class names alone, not from the catalog's
lookup tables. No Ray is started.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import c2s
from c2s.data.catalog import dataset_names, get_dataset_info
from c2s.data.custom import parse_dataset
from c2s.data.labels import seen_labels
from c2s.data.readers import iter_samples
from c2s.world.generate import generate_world

# (seen, unseen) class counts of the zero-shot splits the paper uses (ZegCLIP's splits)
SPLITS = {"voc12": (15, 5), "coco_stuff164k": (156, 15), "context59": (49, 10), "toy": (15, 5),
          "toy_stuff": (16, 5)}


def expected_train_ids(classes: tuple[str, ...], unseen: tuple[str, ...]) -> np.ndarray:
    """Class id -> seen index (rank among the seen classes, in class order); everything else -> 255."""
    out = np.full(256, 255, np.int64)
    seen_index = 0
    for class_id, name in enumerate(classes):
        if name not in unseen:
            out[class_id] = seen_index
            seen_index += 1
    return out


def test_catalog_is_the_one_checked():
    assert set(dataset_names()) == set(SPLITS)


@pytest.mark.parametrize("name", sorted(SPLITS))
@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_every_class_id_maps_to_its_seen_index_or_ignore(name, dtype):
    info = get_dataset_info(name)
    n_seen, n_unseen = SPLITS[name]
    assert len(info.classes) == n_seen + n_unseen and len(info.unseen) == n_unseen
    expected = expected_train_ids(info.classes, info.unseen)
    unseen_ids = [i for i, c in enumerate(info.classes) if c in info.unseen]
    # interior unseen ids (a seen id follows them) exist in every split but VOC's, whose last 5 are unseen
    if name != "voc12":
        assert min(unseen_ids) < max(i for i in range(len(info.classes)) if i not in unseen_ids)

    ids = np.arange(256, dtype=dtype).reshape(2, 8, 16)  # every id 0..255, as a batch of two label maps
    out = seen_labels({"label": ids.copy(), "image": np.zeros((2, 8, 16, 3), np.uint8)}, info)["label"]
    assert out.dtype == np.int64 and out.shape == ids.shape
    assert np.array_equal(out.reshape(-1), expected)
    # stated plainly: unseen ids, ids past the class list and 255 are ignore; seen ids are 0..Ns-1 in order
    assert set(out.reshape(-1)[unseen_ids].tolist()) == {255}
    assert np.all(out.reshape(-1)[len(info.classes):] == 255)
    assert out.reshape(-1)[[i for i in range(len(info.classes)) if i not in unseen_ids]].tolist() == list(range(n_seen))


@pytest.mark.parametrize("dataset, n_seen", [("toy", 15), ("toy_stuff", 16)])
def test_generated_toy_world_training_labels_hold_no_unseen_pixel(tmp_path, dataset, n_seen):
    info = get_dataset_info(dataset)
    generate_world(dict(images_train=40, images_val=4), tmp_path)
    unseen_ids = np.array([i for i, c in enumerate(info.classes) if c in info.unseen])
    unseen_pixels = seen_pixels = 0
    for _image, label, _ip, _lp in iter_samples(info, tmp_path, "train"):
        train = seen_labels({"label": label[None].copy()}, info)["label"][0]
        is_unseen = np.isin(label, unseen_ids)
        unseen_pixels += int(is_unseen.sum())
        assert np.all(train[is_unseen] == 255)
        assert set(np.unique(train).tolist()) <= set(range(n_seen)) | {255}
        labelled = (label != 255) & ~is_unseen
        seen_pixels += int(labelled.sum())
        assert np.array_equal(train[labelled], expected_train_ids(info.classes, info.unseen)[label[labelled]])
    assert unseen_pixels > 0 and seen_pixels > 0  # the world does draw unseen objects: the check is not empty


def test_custom_dataset_interior_unseen_ids_never_reach_training():
    """A YAML dataset whose unseen classes sit between seen ones (ids 1 and 3 of 5), with reduce_zero_label."""
    info = parse_dataset({"name": "mine", "classes": ["road", "car", "person", "bicycle", "tree"],
                          "unseen": ["car", "bicycle"], "reduce_zero_label": True,
                          "layout": {"img_dir": {"train": "i/t", "val": "i/v"}, "ann_dir": {"train": "a/t", "val": "a/v"},
                                     "img_suffix": ".jpg", "seg_map_suffix": ".png"}})
    ids = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    out = seen_labels({"label": ids.copy()}, info)["label"].reshape(-1)
    assert out[:5].tolist() == [0, 255, 1, 255, 2] and np.all(out[5:] == 255)


def _calls_of(path: Path, name: str) -> list[ast.Call]:
    """Every call in ``path`` that names ``name`` as the callee or as an argument (``map_batches(name, ...)``)."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            named = [node.func, *node.args]
            if any(isinstance(n, ast.Name) and n.id == name for n in named):
                calls.append(node)
    return calls


def test_pipeline_and_token_cache_map_labels_through_this_function():
    """The function tested above is the one training applies: the live pipeline maps it over its batches
    (``map_batches(seen_labels, ...)``) and the token cache's readers call it; the pipeline's name is the
    data layer's object, not a copy."""
    import c2s.train.pipeline as pipeline

    assert pipeline.seen_labels is seen_labels
    package = Path(c2s.__file__).parent
    stages = [c for c in _calls_of(package / "train" / "pipeline.py", "seen_labels")
              if isinstance(c.func, ast.Attribute) and c.func.attr == "map_batches"]
    assert len(stages) == 1
    assert len([c for c in _calls_of(package / "teacher" / "cache.py", "seen_labels")
                if isinstance(c.func, ast.Name) and c.func.id == "seen_labels"]) == 2
