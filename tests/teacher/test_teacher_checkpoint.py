"""Teacher weights as users bring them (issue 14, items 3, 4, 7): every accepted format loads the same tokens as
open_clip's own loader, with the activation the weights were trained with; every bad file raises one
TeacherCheckpointError naming teacher.checkpoint, the file and what was expected.

The fakes follow the real files' layouts, as open_clip reads them (open_clip 3.3.0 in .venv):
``openai.py: load_openai_model`` / ``model.py: build_model_from_openai_state_dict`` (OpenAI's traced archive:
top-level ``visual``, ``transformer``, ``token_embedding``, ``positional_embedding``, ``ln_final``,
``text_projection``, ``logit_scale`` plus the JIT buffers ``input_resolution``, ``context_length``,
``vocab_size``; conv / linear / in_proj / projection weights in fp16, see OpenAI's ``convert_weights``),
``factory.py: load_checkpoint`` (open_clip .bin / .safetensors) and ``push_to_hf_hub.py``
(``open_clip_config.json`` with ``quick_gelu: true`` for the openai tag).
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip import factory
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file
from torch import nn

from c2s.teacher import archs
from c2s.teacher.checkpoint import TeacherCheckpointError, decide_quick_gelu, read_checkpoint
from c2s.teacher.clip import Teacher, load_teacher

# OpenAI's conventions (head width 64, text heads = width // 64) so build_model_from_openai_state_dict
# rebuilds exactly this architecture from the fake's weights.
ARCH = "c2s-test-openai-vit"
ARCH_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}
# Like ViT-B-16 in open_clip's pretrained table: QuickGELU-trained (openai) and GELU-trained weights exist.
TAGS = {"openai": {"quick_gelu": True}, "laion": {}}
CFG = dict(arch=ARCH, checkpoint=None, allow_random=False, image_size=32, dense_size=48, dense_variant="maskclip",
           local_margin=0.1, precision="fp32", seed=0)
# OpenAI's convert_weights: conv / linear weights and biases, attention in_proj, proj / text_projection in fp16.
FP16 = re.compile(r"(conv1\.weight|c_fc\.|c_proj\.|out_proj\.|in_proj_|(^|\.)proj$|text_projection)")


@pytest.fixture(scope="module", autouse=True)
def registered():
    archs.register()
    factory._MODEL_CONFIGS[ARCH] = copy.deepcopy(ARCH_CFG)
    open_clip.pretrained._PRETRAINED[ARCH] = TAGS
    yield
    del factory._MODEL_CONFIGS[ARCH]
    del open_clip.pretrained._PRETRAINED[ARCH]


class OpenAIStyle(nn.Module):
    """OpenAI's CLIP module layout around open_clip's towers (same parameter names) plus its JIT buffers."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name in ("visual", "transformer", "token_embedding", "ln_final", "positional_embedding",
                     "text_projection", "logit_scale"):
            setattr(self, name, getattr(clip, name))
        self.mask = clip.attn_mask  # a plain attribute, as in OpenAI's model: traced as a constant
        self.register_buffer("input_resolution", torch.tensor(32))
        self.register_buffer("context_length", torch.tensor(16))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.token_embedding(text) + self.positional_embedding, attn_mask=self.mask)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(image), self.encode_text(text)


def _clip(seed: int, quick_gelu: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(ARCH, quick_gelu=quick_gelu).eval()


def _torchscript(clip: nn.Module, path: Path, fp16: bool = True) -> Path:
    image, text = torch.randn(1, 3, 32, 32), torch.zeros(1, 16, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings and torch.jit deprecation
        traced = torch.jit.trace_module(OpenAIStyle(clip), {"forward": (image, text), "encode_image": (image,),
                                                            "encode_text": (text,)}, check_trace=False)
    if fp16:
        for name, param in traced.named_parameters():
            if FP16.search(name):
                param.data = param.data.half()
    traced.save(str(path))
    return path


def _jit_state(path: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def _hf_dir(root: Path, clip: nn.Module, quick_gelu: bool | None) -> Path:
    """open_clip's Hugging Face layout: both weight files plus open_clip_config.json (None: no config)."""
    root.mkdir()
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    torch.save(state, root / "open_clip_pytorch_model.bin")
    save_file(state, str(root / "open_clip_model.safetensors"))
    if quick_gelu is not None:
        model_cfg = dict(copy.deepcopy(ARCH_CFG), **({"quick_gelu": True} if quick_gelu else {}))
        (root / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    openai = _clip(1, quick_gelu=True)
    out = {"torchscript": _torchscript(openai, root / "ViT-B-16.pt")}
    state = _jit_state(out["torchscript"])
    torch.save(state, root / "openai_state.pt")
    out["openai_state"] = root / "openai_state.pt"
    torch.save(state, root / "openai_legacy.pt", _use_new_zipfile_serialization=False)  # torch < 1.6 format
    out["openai_legacy"] = root / "openai_legacy.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "wrapped.pt")
    out["openai_wrapped"] = root / "wrapped.pt"
    hf_openai = _hf_dir(root / "hf_openai", openai, quick_gelu=True)
    out["hf_bin_openai"] = hf_openai / "open_clip_pytorch_model.bin"
    out["hf_safetensors_openai"] = hf_openai / "open_clip_model.safetensors"
    laion = _clip(2, quick_gelu=False)
    hf_laion = _hf_dir(root / "hf_laion", laion, quick_gelu=False)
    out["hf_bin_laion"] = hf_laion / "open_clip_pytorch_model.bin"
    out["hf_safetensors_laion"] = hf_laion / "open_clip_model.safetensors"
    out["torchscript_gelu"] = _torchscript(laion, root / "gelu_scripted.pt", fp16=False)
    bare = _hf_dir(root / "bare", laion, quick_gelu=None)  # copied without its config: origin unknown
    out["bare_bin"] = bare / "open_clip_pytorch_model.bin"
    return out


def _tokens(teacher: Teacher) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8, generator=g)
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 20:, :] = True
    return {"global": teacher.encode_global(images), "dense": teacher.encode_dense(images),
            "local": teacher.encode_regions(images, masks, torch.tensor([0, 1])),
            "text": teacher.encode_text(["a photo of a cat.", "a photo of a wall."])}


def _teacher_of(model: nn.Module) -> Teacher:
    model = model.float().eval().requires_grad_(False)
    return Teacher(model, ARCH, 32, 48, "maskclip", 0.1, torch.device("cpu"), torch.float32)


def _reference_openai(path: Path) -> Teacher:
    """open_clip's load_openai_model: torch.jit.load (or torch.load) + build_model_from_openai_state_dict."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _teacher_of(open_clip.load_openai_model(str(path), precision="fp32", device="cpu"))


def _reference_open_clip(path: Path, quick_gelu: bool) -> Teacher:
    """open_clip's create_model(pretrained=<file>) -> factory.load_checkpoint."""
    return _teacher_of(open_clip.create_model(ARCH, pretrained=str(path), force_quick_gelu=quick_gelu))


def _activations(teacher: Teacher) -> set[type]:
    blocks = [*teacher.model.visual.transformer.resblocks, *teacher.model.transformer.resblocks]
    return {type(block.mlp.gelu) for block in blocks}


def _assert_same_tokens(loaded: Teacher, reference: Teacher) -> None:
    ours, ref = _tokens(loaded), _tokens(reference)
    for kind in ours:
        assert ours[kind].shape == ref[kind].shape, kind
        assert (ours[kind] - ref[kind]).abs().max() < 1e-6, kind


@pytest.mark.parametrize("fmt", ["torchscript", "openai_state", "openai_legacy", "openai_wrapped"])
def test_openai_formats_load_with_quickgelu_like_load_openai_model(files, fmt):
    teacher = load_teacher({**CFG, "checkpoint": str(files[fmt])}, device="cpu")
    assert _activations(teacher) == {QuickGELU}
    _assert_same_tokens(teacher, _reference_openai(files[fmt]))


@pytest.mark.parametrize("fmt, quick", [("hf_bin_openai", True), ("hf_safetensors_openai", True),
                                        ("hf_bin_laion", False), ("hf_safetensors_laion", False)])
def test_open_clip_files_follow_their_config_json(files, fmt, quick):
    teacher = load_teacher({**CFG, "checkpoint": str(files[fmt])}, device="cpu")
    assert _activations(teacher) == {QuickGELU if quick else nn.GELU}
    _assert_same_tokens(teacher, _reference_open_clip(files[fmt], quick))


def test_torchscript_of_a_gelu_model_loads_gelu(files):
    weights = read_checkpoint(files["torchscript_gelu"])
    assert weights.format == "torchscript" and weights.quick_gelu is False and "torch.gelu" in weights.evidence
    teacher = load_teacher({**CFG, "checkpoint": str(files["torchscript_gelu"])}, device="cpu")
    assert _activations(teacher) == {nn.GELU}
    _assert_same_tokens(teacher, _reference_open_clip(files["hf_bin_laion"], False))  # the same weights


def test_openai_evidence_per_format(files):
    expected = {"torchscript": ("torchscript", "TorchScript archive (OpenAI's CLIP format)"),
                "openai_state": ("torch", "JIT entries input_resolution, context_length, vocab_size"),
                "openai_wrapped": ("torch", "JIT entries"),
                "openai_legacy": ("torch", "JIT entries"),
                "hf_bin_openai": ("torch", "open_clip_config.json (open_clip's config beside the weights) says "
                                           "quick_gelu=true"),
                "hf_safetensors_openai": ("safetensors", "says quick_gelu=true")}
    for fmt, (kind, evidence) in expected.items():
        weights = read_checkpoint(files[fmt])
        assert (weights.format, weights.quick_gelu) == (kind, True), fmt
        assert evidence in weights.evidence, fmt
        assert not any(k in weights.state_dict for k in ("input_resolution", "context_length", "vocab_size"))
        assert not any(k.startswith("module.") for k in weights.state_dict)
    # the fp16 tensors of OpenAI's files survive reading and are cast on loading
    assert read_checkpoint(files["torchscript"]).state_dict["visual.conv1.weight"].dtype == torch.float16


def test_wrong_activation_changes_tokens(files):
    """The activation matters enough for the token comparisons above to catch it."""
    right = load_teacher({**CFG, "checkpoint": str(files["hf_bin_laion"])}, device="cpu")
    wrong = load_teacher({**CFG, "checkpoint": str(files["bare_bin"]), "quick_gelu": True}, device="cpu")
    # same tensors, other activation: the hash text.py's embedding cache keys on must differ too
    assert right.weights_hash != wrong.weights_hash
    assert right.weights_hash == load_teacher({**CFG, "checkpoint": str(files["bare_bin"]), "quick_gelu": False},
                                              device="cpu").weights_hash
    assert _activations(wrong) == {QuickGELU}
    diff = max((a - b).abs().max().item() for a, b in zip(_tokens(right).values(), _tokens(wrong).values()))
    assert diff > 1e-3


def test_unknown_origin_is_refused_with_the_fix(files):
    path = str(files["bare_bin"])
    with pytest.raises(TeacherCheckpointError) as err:
        load_teacher({**CFG, "checkpoint": path}, device="cpu")
    msg = str(err.value)
    assert f"teacher.checkpoint={path!r}: cannot tell which activation" in msg
    assert f"QuickGELU-trained weights for teacher.arch={ARCH!r} (openai) and GELU-trained ones (laion)" in msg
    assert "Set teacher.quick_gelu=true for OpenAI's weights" in msg and "teacher.quick_gelu=false" in msg
    gelu = load_teacher({**CFG, "checkpoint": path, "quick_gelu": False}, device="cpu")
    assert _activations(gelu) == {nn.GELU}
    _assert_same_tokens(gelu, _reference_open_clip(files["bare_bin"], False))


def test_explicit_setting_contradicting_the_file_is_refused(files):
    path = str(files["torchscript"])
    with pytest.raises(TeacherCheckpointError, match=re.escape(
            f"teacher.quick_gelu=false contradicts teacher.checkpoint={path!r}: the file is a TorchScript archive "
            "(OpenAI's CLIP format) whose code computes QuickGELU (torch.sigmoid) (trained with QuickGELU); use "
            "teacher.quick_gelu=null (auto)")):
        load_teacher({**CFG, "checkpoint": path, "quick_gelu": False}, device="cpu")
    agreeing = load_teacher({**CFG, "checkpoint": path, "quick_gelu": True}, device="cpu")
    assert _activations(agreeing) == {QuickGELU}
    with pytest.raises(ValueError, match=r"teacher\.quick_gelu='yes': expected null \(auto\), true or false"):
        load_teacher({**CFG, "checkpoint": path, "quick_gelu": "yes"}, device="cpu")


def test_the_printed_fix_is_a_valid_override(files):
    """`teacher.quick_gelu=true` / `false` / `null` on the command line reach the loader as such."""
    from c2s.config import load_config

    assert load_config("toy_tiny").teacher.quick_gelu is None
    for text, value in (("true", True), ("false", False), ("null", None)):
        cfg = load_config("toy_tiny", [f"teacher.quick_gelu={text}"])
        assert cfg.teacher.quick_gelu is value
        if value is not None:
            teacher = load_teacher({**CFG, "checkpoint": str(files["bare_bin"]), "quick_gelu": cfg.teacher.quick_gelu},
                                   device="cpu")
            assert _activations(teacher) == {QuickGELU if value else nn.GELU}


def test_decision_for_open_clip_archs_without_evidence(files):
    """open_clip's real pretrained table: ViT-B-16 has both kinds (openai vs laion2b) -> refused;
    ViT-B-16-quickgelu says QuickGELU itself; c2s's test arch has no pretrained weights -> its config."""
    weights = read_checkpoint(files["bare_bin"])
    with pytest.raises(TeacherCheckpointError, match=r"'ViT-B-16' \(openai, dfn2b, metaclip_400m, metaclip_fullcc\) "
                                                     r"and GELU-trained ones \(laion400m_e31, .*, \.\.\.\)"):
        decide_quick_gelu("auto", "ViT-B-16", weights)
    assert decide_quick_gelu("auto", "ViT-B-16-quickgelu", weights)[0] is True
    assert decide_quick_gelu("auto", "c2s-test-vit", weights)[0] is False
    assert decide_quick_gelu("auto", "ViT-B-16", None)[0] is False  # random weights: the config
    assert decide_quick_gelu("true", "ViT-B-16", weights) == (True, "teacher.quick_gelu=true")


# ---- bad files ----------------------------------------------------------------------------------------------
def _bad_files(root: Path, files: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the message must say)."""
    g = torch.Generator().manual_seed(3)
    random = root / "random.pt"
    random.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).tolist()))
    random.write_bytes(b"\x13" + random.read_bytes()[1:])  # not a zip / pickle / safetensors start
    empty = root / "empty.pt"
    empty.write_bytes(b"")
    full = files["hf_safetensors_laion"].read_bytes()
    cut_safetensors = root / "cut.safetensors"
    cut_safetensors.write_bytes(full[: len(full) // 2])
    full = files["hf_bin_laion"].read_bytes()
    cut_zip = root / "cut.bin"
    cut_zip.write_bytes(full[: len(full) // 2])
    pickled = root / "pickled_module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a whole Python object, as torch.save(model) writes
    not_clip = root / "not_clip.pt"
    torch.save({"backbone.weight": torch.zeros(2)}, not_clip)
    npz = root / "siglip.npz"
    with open(npz, "wb") as fh:
        import numpy as np

        np.savez(fh, a=np.zeros(2))
    directory = files["hf_bin_laion"].parent
    return {
        "random": (random, "is not a weights file c2s can read (starts with bytes "),
        "empty": (empty, "is empty (0 bytes"),
        "cut_safetensors": (cut_safetensors, "is a truncated or damaged safetensors file"),
        "cut_zip": (cut_zip, "is a truncated or damaged zip archive"),
        "pickled": (pickled, "holds Python objects besides tensors (Unsupported global: GLOBAL "
                             "torch.nn.modules.linear.Linear"),
        "not_clip": (not_clip, "holds 1 tensors but no CLIP ViT image tower"),
        "npz": (npz, "is a numpy archive (big_vision/SigLIP weights)"),
        "directory": (directory, "is a directory, not a weights file (it holds open_clip_model.safetensors, "
                                 f"open_clip_pytorch_model.bin: pass teacher.checkpoint="
                                 f"{directory / 'open_clip_model.safetensors'})"),
    }


def test_bad_files_raise_one_error_naming_key_file_and_expectation(files, tmp_path):
    for name, (path, says) in _bad_files(tmp_path, files).items():
        with pytest.raises(TeacherCheckpointError) as err:
            load_teacher({**CFG, "checkpoint": str(path)}, device="cpu")
        msg = str(err.value)
        assert msg.startswith(f"teacher.checkpoint={str(path)!r} "), (name, msg)
        assert says in msg, (name, msg)
        assert "weights_only=False" not in msg, name  # torch's advice is never passed on
        if name not in ("not_clip",):
            assert "expected " in msg and "OpenAI's TorchScript archive" in msg, (name, msg)
        assert isinstance(err.value, ValueError)


def test_checkpoint_of_another_arch_names_both(files, tmp_path):
    """Was `AssertionError: text pos_embed width changed!` from open_clip's resize_text_pos_embed."""
    toy = tmp_path / "toy.pt"
    torch.save(_clip(0, False).state_dict(), toy)
    with pytest.raises(TeacherCheckpointError) as err:
        load_teacher({**CFG, "arch": "c2s-toy-vit", "checkpoint": str(toy), "quick_gelu": False}, device="cpu")
    assert str(err.value) == (
        f"teacher.checkpoint={str(toy)!r} does not fit teacher.arch='c2s-toy-vit': the file holds a ViT of width "
        "64 x 2 layers, patch 8, image 32, embed dim 64, text width 64 x 1 layers (open_clip architectures of that "
        f"shape: c2s-test-vit, {ARCH}); teacher.arch='c2s-toy-vit' is a ViT of width 96 x 4 layers, patch 8, "
        "image 64, embed dim 256, text width 128 x 2 layers (differs in width 64 vs 96, layers 2 vs 4, image_size "
        "32 vs 64, embed_dim 64 vs 256, text_width 64 vs 128, text_layers 1 vs 2). Set teacher.arch=c2s-test-vit")
    # Same shape, a tensor short: caught tensor by tensor when loading (open_clip's strict load_state_dict).
    state = _clip(0, False).state_dict()
    del state["ln_final.bias"]
    torch.save(state, toy)
    with pytest.raises(TeacherCheckpointError, match=re.escape(
            f"teacher.checkpoint={str(toy)!r} does not fit teacher.arch={ARCH!r}: the file holds a ViT of width 64 "
            "x 2 layers") + r".* \(1 missing, e\.g\. ln_final\.bias\)\. Set teacher\.arch=c2s-test-vit$"):
        load_teacher({**CFG, "checkpoint": str(toy), "quick_gelu": False}, device="cpu")


def test_missing_path_is_still_file_not_found(tmp_path):
    missing = tmp_path / "nope" / "ViT-B-16.pt"
    with pytest.raises(FileNotFoundError, match=r"teacher\.checkpoint: weights file .*nope/ViT-B-16\.pt.* does not "
                                                r"exist") as err:
        load_teacher({**CFG, "checkpoint": str(missing)}, device="cpu")
    assert isinstance(err.value, TeacherCheckpointError)


def test_preflight_names_a_directory_as_such(files, tmp_path):
    """The job's preflight (c2s/train/resolve.py) used to call a directory 'does not exist'."""
    from c2s.config import load_config
    from c2s.errors import PreflightError
    from c2s.inputs import resolve_inputs

    directory = files["hf_bin_laion"].parent
    cfg = load_config("toy_tiny", [f"data.root={tmp_path}", f"teacher.checkpoint={directory}"])
    with pytest.raises(PreflightError, match=re.escape(f"teacher.checkpoint={str(directory)!r} is a directory, not a "
                                                       "weights file (it holds open_clip_model.safetensors")):
        resolve_inputs(cfg)
    cfg = load_config("toy_tiny", [f"data.root={tmp_path}", f"teacher.checkpoint={tmp_path / 'none.pt'}"])
    with pytest.raises(PreflightError, match=r"weights file .*none\.pt' does not exist \(expected a local file: "
                                             r"OpenAI's TorchScript archive"):
        resolve_inputs(cfg)
