"""The inductive rule (paper Sec. 4.1): no unseen class id ever reaches the training labels.

Checked through the very function the training pipeline maps over its batches
(``c2s.train.pipeline.seen_labels``, which calls ``DatasetInfo.to_train_labels``), for every catalog
dataset and for the labels of a generated toy world. The expected mapping is rebuilt here from the class
names alone, not from the catalog's lookup tables.
"""

from __future__ import annotations

import numpy as np
import pytest

from c2s.data.catalog import DATASETS, get_dataset_info
from c2s.data.readers import iter_samples
from c2s.data.toyworld import generate_world
from c2s.train.pipeline import seen_labels

# (seen, unseen) class counts of the zero-shot splits the paper uses (ZegCLIP's splits)
SPLITS = {"voc12": (15, 5), "coco_stuff164k": (156, 15), "context59": (49, 10), "toy": (15, 5)}


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
    assert set(DATASETS) == set(SPLITS)


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


def test_generated_toy_world_training_labels_hold_no_unseen_pixel(tmp_path):
    info = get_dataset_info("toy")
    generate_world(dict(images_train=40, images_val=4), tmp_path)
    unseen_ids = np.array([i for i, c in enumerate(info.classes) if c in info.unseen])
    unseen_pixels = seen_pixels = 0
    for _image, label, _ip, _lp in iter_samples(info, tmp_path, "train"):
        train = seen_labels({"label": label[None].copy()}, info)["label"][0]
        is_unseen = np.isin(label, unseen_ids)
        unseen_pixels += int(is_unseen.sum())
        assert np.all(train[is_unseen] == 255)
        assert set(np.unique(train).tolist()) <= set(range(15)) | {255}
        labelled = (label != 255) & ~is_unseen
        seen_pixels += int(labelled.sum())
        assert np.array_equal(train[labelled], expected_train_ids(info.classes, info.unseen)[label[labelled]])
    assert unseen_pixels > 0 and seen_pixels > 0  # the world does draw unseen objects: the check is not empty
