"""Open-vocabulary prediction (issue 16): Segmenter and `c2s predict` on the smallest toy run (no Ray).

The run is toy_tiny's tiny SegFormer with seeded random weights and the random-weight test CLIP: the tests
prove the plumbing (shared inference path, text tower, cache, class-list semantics, files), not accuracy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from toy_run import make_toy_run

from c2s.segmenter import ClassNameError, Segmenter, check_class_names, load_text_encoder

TOY_NAMES = ["red circle", "blue square", "green triangle", "zebra"]  # seen, seen, unseen, never named


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy16")
    run = make_toy_run(root / "run")
    cache = root / "cache"
    return run, cache, Segmenter.from_run(run, overrides=[f"cache_root={cache}"])


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocks of flat colour (what the toy world's objects look like) plus noise."""
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(rng.integers(0, 256, (4, 6, 3)), -(-h // 4), 0), -(-w // 6), 1)[:h, :w]
    return np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)


def test_segmenter_and_eval_share_one_inference_path(toy, tmp_path):
    """Segmenter.predict == c2s.evaluate.predict (eval's path) on the same text: at the eval size, and for
    an image of another size (resized by data.eval_scale, logits resized back before the argmax)."""
    from c2s.data.transforms import rescale_size, resize_pair
    from c2s.evaluate import predict

    run, cache, seg = toy
    text = seg.text_embeddings(TOY_NAMES)
    cfg = seg.cfg
    alpha, form = float(cfg.loss.alpha), cfg.loss.seen_logits
    same = _image(96, 96)
    other = _image(60, 150, seed=1)  # eval_scale (96, 96): resized to 38 x 96, then back to 60 x 150
    out = seg.predict([same, other], classes=TOY_NAMES, batch_size=2)
    assert np.array_equal(out[0].labels, predict(seg.student, same, text, alpha, cfg.evaluation, form=form))
    small = resize_pair(other, None, rescale_size(60, 150, (96, 96)))[0]
    assert small.shape[:2] == (38, 96)
    expected = predict(seg.student, small, text, alpha, cfg.evaluation, form=form, out_size=(60, 150))
    assert out[1].labels.shape == (60, 150) and np.array_equal(out[1].labels, expected)
    assert len(np.unique(out[1].labels)) >= 2  # not a constant map
    assert out[1].fractions.sum() == pytest.approx(1.0)
    assert out[1].fractions[2] == pytest.approx((expected == 2).mean())
    # one at a time gives the same maps as a batch of two
    assert all(np.array_equal(a.labels, b.labels) for a, b in
               zip(out, seg.predict([same, other], classes=TOY_NAMES, batch_size=1)))
    # sliding windows when the run's config says so: still eval's path
    slide = Segmenter.from_run(run, overrides=[f"cache_root={cache}", "evaluation.mode=slide",
                                               "evaluation.crop_size=[64,64]", "evaluation.stride=[40,40]"])
    got = slide.predict([same], classes=TOY_NAMES)[0].labels
    assert np.array_equal(got, predict(slide.student, same, text, alpha, slide.cfg.evaluation, form=form))
    assert not np.array_equal(got, out[0].labels)  # the windows changed the answer: the mode was honoured


def test_class_order_and_added_names_keep_each_pixel_s_name(toy):
    """Open vocabulary: a pixel's class NAME does not depend on the list's order, and adding a name can only
    take pixels to the new name (argmax over a superset)."""
    _, _, seg = toy
    image = _image(96, 96, seed=2)
    names = TOY_NAMES[:3]
    a = seg.predict([image], classes=names)[0]
    b = seg.predict([image], classes=names[::-1])[0]
    assert np.array_equal(np.array(a.classes)[a.labels], np.array(b.classes)[b.labels])
    assert np.allclose(a.fractions, b.fractions[::-1]) and np.allclose(a.scores, b.scores[::-1], atol=1e-6)
    c = seg.predict([image], classes=TOY_NAMES)[0]
    moved = c.labels != a.labels
    assert np.all(c.labels[moved] == 3)  # only to "zebra"
    # scores: the mean softmax over the pixels, summing to one over the classes
    assert c.scores.sum() == pytest.approx(1.0, abs=1e-5)


def test_bad_class_names_are_refused_by_name():
    with pytest.raises(ClassNameError, match=r"positions \[1\]"):
        check_class_names(["cat", "  ", "dog"])
    with pytest.raises(ClassNameError, match="'potted plant' and 'potted_plant'"):
        check_class_names(["potted plant", "dog", "potted_plant"])
    with pytest.raises(ClassNameError, match="no class names"):
        check_class_names([])
    assert check_class_names([" cat ", "dog"]) == ["cat", "dog"]


def test_parse_classes_comma_list_and_file(tmp_path):
    from c2s.predict import parse_classes

    assert parse_classes("cat, dog,red cross") == ["cat", "dog", "red cross"]
    with pytest.raises(ClassNameError, match=r"names \[2\] \(1-based\) are empty"):
        parse_classes("cat,,dog")
    names = tmp_path / "names.txt"
    names.write_text("cat\nred cross\n")
    assert parse_classes(str(names)) == ["cat", "red cross"]
    names.write_text("cat\n\nred cross\n")
    with pytest.raises(ClassNameError, match=r"names.txt: lines \[2\] are empty"):
        parse_classes(str(names))


def test_text_tower_only_same_embeddings_and_cached(toy, monkeypatch):
    """The encoder keeps no vision tower, gives the full teacher's embeddings, and a second Segmenter reads
    them from the cache file keyed by (weights fingerprint, names, templates) without running CLIP."""
    from c2s.teacher.clip import Teacher, load_teacher
    from c2s.teacher.text import cache_file, text_embeddings

    run, cache, seg = toy
    encoder = load_text_encoder(seg.cfg.teacher)
    assert encoder.model.visual is None
    full = load_teacher(seg.cfg.teacher, device="cpu")
    assert encoder.weights_hash == full.weights_hash
    names = ["blue cross", "kettle"]
    got = seg.text_embeddings(names)
    assert torch.allclose(got, text_embeddings(full, names, "single"), atol=1e-6)
    path = cache_file(full, names, "single", cache)
    assert path.is_file() and np.allclose(np.load(path), got.numpy())
    monkeypatch.setattr(Teacher, "encode_text", lambda *a, **k: pytest.fail("cache miss: CLIP ran"))
    again = Segmenter.from_run(run, overrides=[f"cache_root={cache}"]).text_embeddings(names)
    assert torch.equal(again, got)
    # another template set is another cache entry (and needs CLIP)
    with pytest.raises(pytest.fail.Exception, match="cache miss"):
        Segmenter.from_run(run, overrides=[f"cache_root={cache}", "teacher.templates=ensemble"]).text_embeddings(names)


def test_predict_cli_writes_files_and_skips_undecodable_images(toy, tmp_path, capsys):
    from c2s.predict import main

    run, cache, _ = toy
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_image(96, 96)).save(folder / "a.png")
    Image.fromarray(_image(50, 80, seed=3)).save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    rc = main([str(run), str(folder), str(tmp_path / "missing.png"), "--classes", ",".join(TOY_NAMES),
               "--out", str(out), "--set", f"cache_root={cache}"])
    captured = capsys.readouterr()
    assert rc == 1  # some inputs were skipped; the good ones are still written
    assert "broken.png" in captured.err and "missing.png: no such file" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["images"] == 2 and len(summary["skipped"]) == 2 and summary["classes"] == TOY_NAMES
    for stem, size in (("a", (96, 96)), ("b", (50, 80))):
        record = json.loads((out / f"{stem}.json").read_text())
        label = Image.open(out / f"{stem}_label.png")
        assert label.mode == "P" and label.size == size[::-1]
        ids = np.asarray(label)
        assert record["classes"] == TOY_NAMES and record["size"] == list(size)
        for k, name in enumerate(TOY_NAMES):
            assert record["fractions"][name] == pytest.approx((ids == k).mean(), abs=1e-6)
        overlay = Image.open(out / f"{stem}_overlay.png")
        assert overlay.size[0] > size[1] and overlay.size[1] >= size[0]  # image + legend strip
    assert not (out / "broken.json").exists()
    # names refused before any image is read
    rc = main([str(run), str(folder), "--classes", "cat,cat", "--out", str(out), "--set", f"cache_root={cache}"])
    assert rc == 2 and "duplicated class names" in capsys.readouterr().err
