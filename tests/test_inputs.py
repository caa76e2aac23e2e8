"""c2s/inputs.py: the three input keys take a local path or a provider reference, resolved by one loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from c2s import inputs
from c2s.config import load_config
from c2s.errors import PreflightError
from c2s.inputs import INPUT_KEYS, parse_reference, references, resolve_references


def test_a_reference_is_scheme_colon_name_and_a_path_is_not():
    assert parse_reference("toy:clip") == ("toy", "clip")
    assert parse_reference("hf-hub:timm.vit") == ("hf-hub", "timm.vit")
    for path in ("/data/voc", "./toy:world", "C:\\data\\voc", "c:/data", "toy", None, 3):
        assert parse_reference(path) is None, path


def test_the_toy_world_provides_one_reference_per_key():
    assert references() == ["toy:world", "toy:clip", "toy:backbone"]
    provided = {name: key for name, (key, _) in inputs.providers()["toy"].items()}
    assert provided == dict(zip(("world", "clip", "backbone"), INPUT_KEYS, strict=True))


@pytest.fixture
def fake_provider(monkeypatch, tmp_path):
    """A provider table with one scheme whose makers record their calls (no toy world is made)."""
    calls = []

    def make(kind):
        def maker(cfg, root):
            calls.append((kind, Path(root)))
            path = tmp_path / kind
            path.mkdir(exist_ok=True) if kind == "dir" else path.write_bytes(b"weights")
            return path
        return maker

    table = {"fake": {"root": ("data.root", make("dir")), "clip": ("teacher.checkpoint", make("clip.pt")),
                      "net": ("model.pretrained", make("net.pth"))}}
    monkeypatch.setattr(inputs, "providers", lambda: table)
    return calls


def _cfg(tmp_path, **values):
    cfg = load_config("voc12_segformer_b4")
    cfg.data.root, cfg.teacher.checkpoint, cfg.model.pretrained = (values.get(k) for k in ("root", "ckpt", "net"))
    return cfg


def test_one_loop_replaces_every_reference_by_its_path(fake_provider, tmp_path):
    cfg = _cfg(tmp_path, root="fake:root", ckpt="fake:clip", net="fake:net")
    resolve_references(cfg, tmp_path / "cache")
    assert (cfg.data.root, cfg.teacher.checkpoint, cfg.model.pretrained) == (
        str(tmp_path / "dir"), str(tmp_path / "clip.pt"), str(tmp_path / "net.pth"))
    assert fake_provider == [("dir", tmp_path / "cache"), ("clip.pt", tmp_path / "cache"),
                             ("net.pth", tmp_path / "cache")]


@pytest.mark.parametrize(("values", "message"), [
    (dict(root=None, ckpt="fake:clip"), r"data.root is not set; point it at your voc12 folder .* "
                                        r"or name a provided one \(fake:root, fake:clip, fake:net\)"),
    (dict(root="fake:root", ckpt=None), "teacher.checkpoint is not set: pass a local open_clip weights file"),
    (dict(root="fake:nope", ckpt="fake:clip"), r"data.root = 'fake:nope': no provider for 'fake:nope' \(known "
                                               r"references: fake:root, fake:clip, fake:net; or pass a local path\)"),
    (dict(root="fake:clip", ckpt="fake:clip"), "data.root = 'fake:clip': 'fake:clip' provides teacher.checkpoint, "
                                               "not data.root"),
    (dict(root="fake:root", ckpt="fake:clip", net="fake"), "model.pretrained = 'fake' is the old spelling; write "
                                                           "model.pretrained=fake:net"),
    (dict(root="fake:root", ckpt="fake:clip", net="nope.pth"), r"model.pretrained = 'nope.pth' does not exist"),
])
def test_each_mistake_names_the_key_the_value_and_what_was_expected(fake_provider, tmp_path, values, message):
    with pytest.raises(PreflightError, match=message):
        resolve_references(_cfg(tmp_path, **values), tmp_path)


def test_null_pretrained_means_random_init_and_a_local_path_becomes_absolute(fake_provider, tmp_path, monkeypatch):
    (tmp_path / "voc").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, root="voc", ckpt="fake:clip", net=None)
    resolve_references(cfg, tmp_path)
    assert cfg.data.root == str(tmp_path / "voc") and cfg.model.pretrained is None
    assert [kind for kind, _ in fake_provider] == ["clip.pt"]


def test_the_toy_provider_refuses_a_real_dataset(tmp_path):
    cfg = _cfg(tmp_path, root="toy:world", ckpt=None)
    with pytest.raises(PreflightError, match="data.root = 'toy:world' is the toy world's, but data.dataset = "
                                             "'voc12'.*point data.root at your dataset's folder"):
        resolve_references(cfg, tmp_path)
    tiny = load_config("toy_tiny", [f"cache_root={tmp_path}", "teacher.checkpoint=toy:clip"])
    with pytest.raises(PreflightError, match="'toy:clip' is the toy CLIP of teacher.arch = 'c2s-toy-vit' or "
                                             "'c2s-toy-vit-48', but teacher.arch = 'c2s-test-vit'"):
        resolve_references(tiny, tmp_path)
