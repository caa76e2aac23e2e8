"""Reading the CLIP weights users bring, and refusing bad ones with one error that names the culprit.

Accepted files (``teacher.checkpoint``):

* OpenAI's TorchScript archives (``ViT-B-16.pt``, the files behind open_clip's ``openai`` tags);
* open_clip's ``open_clip_pytorch_model.bin`` and ``open_clip_model.safetensors`` (Hugging Face layout,
  optionally with ``open_clip_config.json`` beside them);
* any state dict saved with ``torch.save`` with OpenAI's / open_clip's key names (``visual.conv1.weight``,
  ``visual.transformer.resblocks.0.attn.in_proj_weight``, ``transformer.resblocks.0.mlp.c_fc.weight`` ...),
  optionally under ``{"state_dict": ...}`` and/or with a ``module.`` prefix on every key.

This follows open_clip 3.x (read in ``.venv``'s open_clip 3.3.0 and mlfoundations/open_clip on GitHub):
``openai.py: load_openai_model`` (``torch.jit.load(path, map_location="cpu")`` then
``build_model_from_openai_state_dict(model.state_dict())``, which always builds QuickGELU),
``factory.py: load_state_dict`` (``"state_dict"`` wrapper, ``module.`` prefix, drops the JIT keys
``input_resolution`` / ``context_length`` / ``vocab_size``) and ``factory.py: load_checkpoint`` (logit_scale
reshape, old text layout -> ``text.``), ``model.py: build_model_from_openai_state_dict`` (OpenAI's key
names and geometry), ``pretrained.py`` (the ``quick_gelu`` flag of each pretrained tag) and
``push_to_hf_hub.py`` (``open_clip_config.json`` gets ``quick_gelu: true`` for the ``openai`` tag).

What runs when a file is read -- nothing that unpickles arbitrary Python:

* torch.save files: ``torch.load(weights_only=True)`` (torch's restricted unpickler: tensors, containers and
  primitive values only).
* safetensors: ``safetensors.torch.load_file`` (a JSON header and raw tensor bytes; no code at all).
* TorchScript archives: ``torch.jit.load``, as open_clip does. It runs no Python: the archive's ``code/``
  files are TorchScript source, compiled by TorchScript's own compiler (no ``exec``, no imports of Python
  modules); ``data.pkl`` is read by TorchScript's C++ unpickler, which can only build TorchScript
  classes defined by that code, tensors and plain containers. The one archive code it may *execute* is a
  TorchScript ``__setstate__`` method of such a class (TorchScript ops only, no Python); OpenAI's traced
  archives define none. c2s then keeps only ``state_dict()`` tensors and never calls the module.
  (A pure-Python reader of ``data.pkl`` was considered and rejected: telling parameters from other tensor
  attributes needs the TorchScript class definitions, and it could not be checked against OpenAI's real
  file here.)

Which activation: OpenAI trained with QuickGELU, open_clip's ``ViT-B-16`` config builds ``nn.GELU``. The
weights' origin decides (``decide_quick_gelu``): a TorchScript archive's code (``torch.sigmoid`` =
QuickGELU, ``torch.gelu`` = GELU), OpenAI's JIT keys in a state dict, or ``open_clip_config.json`` beside an
open_clip file. Without such a sign, an architecture that open_clip lists with both QuickGELU- and
GELU-trained weights is refused with the fix (``teacher.quick_gelu=true|false``); no silent guess.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip import factory
from torch import nn

log = logging.getLogger(__name__)

ACCEPTED = (
    "OpenAI's TorchScript archive (e.g. ViT-B-16.pt), open_clip's open_clip_pytorch_model.bin or "
    "open_clip_model.safetensors, or a state dict saved with torch.save (OpenAI/open_clip key names, "
    "optionally under 'state_dict' and with a 'module.' prefix)"
)
# Names open_clip gives its files in a Hugging Face repository (push_to_hf_hub.py / constants.py).
HF_WEIGHTS_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_CONFIG_NAME = "open_clip_config.json"
# Extra buffers of OpenAI's JIT models; open_clip's load_state_dict / build_model_from_openai_state_dict
# drop them. In a plain state dict they mark a conversion straight from OpenAI's archive.
OPENAI_JIT_KEYS = ("input_resolution", "context_length", "vocab_size")


class TeacherCheckpointError(ValueError):
    """A ``teacher.checkpoint`` file c2s cannot use; the message names the file and what was expected."""


class TeacherCheckpointNotFound(TeacherCheckpointError, FileNotFoundError):
    """``teacher.checkpoint`` names a path that does not exist."""


@dataclass
class CheckpointWeights:
    """A weights file read into memory.

    ``quick_gelu``: the activation the file says its weights were trained with (True QuickGELU, False GELU,
    None when the file does not tell); ``evidence``: why, in words.
    """

    path: Path
    format: str  # "torchscript" | "torch" | "safetensors"
    state_dict: dict[str, torch.Tensor]
    quick_gelu: bool | None = None
    evidence: str = ""


def _fail(path: Path | str, problem: str, expected: str = ACCEPTED) -> TeacherCheckpointError:
    return TeacherCheckpointError(f"teacher.checkpoint={str(path)!r} {problem}; expected {expected}")


# ---- locating the file ----------------------------------------------------------------------------------
def check_path(path: Path) -> Path:
    """The file itself: refuse a directory (suggesting the weights inside), a missing path, an empty file."""
    if path.is_dir():
        inside = [name for name in HF_WEIGHTS_NAMES if (path / name).is_file()]
        inside += sorted(p.name for p in path.glob("*.pt"))[:3]
        hint = f" (it holds {', '.join(inside)}: pass teacher.checkpoint={path / inside[0]})" if inside else ""
        raise _fail(path, f"is a directory, not a weights file{hint}", f"a file: {ACCEPTED}")
    if not path.exists():
        raise TeacherCheckpointNotFound(f"teacher.checkpoint: weights file {str(path)!r} does not exist "
                                        f"(expected a local file: {ACCEPTED})")
    if not path.is_file():
        raise _fail(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes; an interrupted copy or download?)")
    if not os.access(path, os.R_OK):
        raise _fail(path, "is not readable (permission denied)")
    return path


# ---- reading --------------------------------------------------------------------------------------------
def _zip_records(path: Path) -> list[str] | None:
    """Record names inside a zip (torch.save and TorchScript both write zips), root folder stripped; None
    when the file is no zip. Reads only the zip's directory."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04":  # starts like a zip but has no directory: cut short
                raise _fail(path, "is a truncated or damaged zip archive (no central directory; an "
                                  "interrupted copy or download?)")
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise _fail(path, f"is a damaged zip archive ({err})") from err
    return [name.split("/", 1)[1] if "/" in name else name for name in names]


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= header_len <= path.stat().st_size


def _torchscript_activation(path: Path) -> tuple[bool | None, str]:
    """QuickGELU is ``x * sigmoid(1.702 x)``: traced or scripted, the archive's code calls torch.sigmoid;
    nn.GELU appears as torch.gelu. Reads the code records as text (nothing is compiled here)."""
    with zipfile.ZipFile(path) as zf:
        code = "\n".join(zf.read(name).decode("utf-8", "replace") for name in zf.namelist()
                         if "/code/" in name and name.endswith(".py"))
    sigmoid, gelu = "torch.sigmoid(" in code, "torch.gelu(" in code
    if sigmoid and not gelu:
        return True, "a TorchScript archive (OpenAI's CLIP format) whose code computes QuickGELU (torch.sigmoid)"
    if gelu and not sigmoid:
        return False, "a TorchScript archive whose code calls torch.gelu (exact GELU, not OpenAI's QuickGELU)"
    return None, ("a TorchScript archive whose code shows " + ("both torch.sigmoid and torch.gelu" if gelu
                                                              else "neither torch.sigmoid nor torch.gelu"))


def _read_torchscript(path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():
        # torch 2.10+ flags torch.jit.load as deprecated; OpenAI's files exist only in this format.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*", category=FutureWarning)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _fail(path, f"is a TorchScript archive that torch cannot read ({first})") from err
    state = {k: v.detach() for k, v in module.state_dict().items()}
    del module
    return state


def _weights_only_reason(err: Exception) -> str:
    """torch's message without its advice to pass weights_only=False (c2s never unpickles Python)."""
    text = str(err)
    match = re.search(r"WeightsUnpickler error: (.*)", text)
    return match.group(1).strip() if match else (text.strip().splitlines() or [type(err).__name__])[0]


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _weights_only_reason(err)
        if "Unsupported global" in reason or "Unsupported class" in reason:
            raise _fail(path, f"holds Python objects besides tensors ({reason}); c2s reads tensors only and "
                              "never unpickles Python objects: re-save the weights with "
                              "torch.save(model.state_dict(), path)") from err
        raise _fail(path, f"is not a weights file c2s can read (torch.load: {reason})") from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(path, f"could not be read: truncated or damaged ({type(err).__name__}: {reason})") from err


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(path, f"is a truncated or damaged safetensors file ({err})") from err


def _unwrap(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """open_clip's load_state_dict: a ``state_dict`` entry if present, then a ``module.`` prefix dropped."""
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise _fail(path, f"holds {kind}, not a state dict of tensors")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise _fail(path, f"holds entries that are not tensors ({', '.join(not_tensors[:5])}); not a state dict")
    # open_clip strips 7 characters from every key when the first starts with 'module'; only a prefix that
    # every key carries is stripped here, so a genuine 'module...' key cannot be cut.
    if all(str(k).startswith("module.") for k in obj):
        obj = {str(k)[len("module."):]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def _sidecar_activation(path: Path) -> tuple[bool | None, str]:
    """open_clip's Hugging Face layout: open_clip_config.json beside the weights records ``quick_gelu``."""
    config = path.parent / HF_CONFIG_NAME
    if path.name not in HF_WEIGHTS_NAMES or not config.is_file():
        return None, ""
    try:
        model_cfg = json.loads(config.read_text())["model_cfg"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise TeacherCheckpointError(f"teacher.checkpoint={str(path)!r}: {config} beside it is not open_clip's "
                                     f"config JSON with a 'model_cfg' entry ({err})") from err
    quick = bool(model_cfg.get("quick_gelu", False))  # open_clip's default when the key is absent
    return quick, f"{config} (open_clip's config beside the weights) says quick_gelu={str(quick).lower()}"


def read_checkpoint(path: str | Path) -> CheckpointWeights:
    """Read a teacher weights file into a CheckpointWeights, or raise TeacherCheckpointError."""
    path = check_path(Path(path).expanduser())
    records = _zip_records(path)
    quick: bool | None = None
    evidence = ""
    if records is not None:
        if "constants.pkl" in records:  # torch.serialization._is_torchscript_zip's test
            quick, evidence = _torchscript_activation(path)
            state, fmt = _read_torchscript(path), "torchscript"
        elif "data.pkl" in records:
            state, fmt = _read_torch(path), "torch"
        elif records and all(r.endswith(".npy") for r in records):
            raise _fail(path, "is a numpy archive (big_vision/SigLIP weights), which c2s's ViT teacher does not "
                              "load")
        else:
            raise _fail(path, f"is a zip archive but not a PyTorch one (records: {', '.join(records[:4])})")
    elif _looks_like_safetensors(path):
        state, fmt = _read_safetensors(path), "safetensors"
    else:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] != b"\x80":  # every torch.save file (zip aside) starts with a pickle PROTO opcode
            raise _fail(path, f"is not a weights file c2s can read (starts with bytes {head.hex()!r})")
        state, fmt = _read_torch(path), "torch"
    state = _unwrap(path, state)
    jit_keys = [k for k in OPENAI_JIT_KEYS if k in state]
    for key in jit_keys:
        del state[key]
    if jit_keys and quick is None and fmt != "torchscript":
        quick, evidence = True, f"a state dict converted from OpenAI's TorchScript model (it keeps OpenAI's " \
                                f"JIT entries {', '.join(jit_keys)})"
    side_quick, side_evidence = _sidecar_activation(path)
    if side_quick is not None:
        if quick is not None and quick != side_quick:
            raise TeacherCheckpointError(f"teacher.checkpoint={str(path)!r}: {evidence}, but {side_evidence}; "
                                         "set teacher.quick_gelu=true or false to say which is right")
        quick, evidence = side_quick, side_evidence
    return CheckpointWeights(path, fmt, state, quick, evidence)


# ---- which architecture a state dict holds ------------------------------------------------------------
def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    ids = {k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)}
    return len([i for i in ids if i.isdigit()])


def geometry(state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """The shape of a CLIP ViT state dict, read as build_model_from_openai_state_dict does; None when the
    dict holds no open_clip / OpenAI ViT image tower."""
    conv, pos = state.get("visual.conv1.weight"), state.get("visual.positional_embedding")
    if conv is None or pos is None or conv.ndim != 4 or pos.ndim != 2:
        return None
    patch = int(conv.shape[-1])
    geo = {"width": int(conv.shape[0]), "layers": _count_blocks(state, "visual.transformer.resblocks."),
           "patch_size": patch, "image_size": patch * round(math.sqrt(pos.shape[0] - 1))}
    if "visual.proj" in state:
        geo["embed_dim"] = int(state["visual.proj"].shape[1])
    text = "text." if "text.ln_final.weight" in state else ""
    if f"{text}ln_final.weight" in state:
        geo["text_width"] = int(state[f"{text}ln_final.weight"].shape[0])
        geo["text_layers"] = _count_blocks(state, f"{text}transformer.resblocks.")
    return geo


def _config_geometry(cfg: Mapping[str, Any]) -> dict[str, int] | None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision or "hf_model_name" in text or not isinstance(vision.get("layers"), int):
        return None
    image = vision.get("image_size", 224)
    image = image[0] if isinstance(image, list | tuple) else image
    return {"width": vision.get("width", 768), "layers": vision["layers"], "patch_size": vision.get("patch_size", 16),
            "image_size": int(image), "embed_dim": cfg.get("embed_dim"), "text_width": text.get("width", 512),
            "text_layers": text.get("layers", 12)}


def matching_archs(geo: Mapping[str, int]) -> list[str]:
    """open_clip architectures (registered c2s ones included) whose config has this geometry."""
    out = []
    for name, cfg in factory._MODEL_CONFIGS.items():
        want = _config_geometry(cfg)
        if want is not None and all(want.get(k) == v for k, v in geo.items()):
            out.append(name)
    return out


def _describe(geo: Mapping[str, int]) -> str:
    text = f", text width {geo['text_width']} x {geo['text_layers']} layers" if "text_width" in geo else ""
    embed = f", embed dim {geo['embed_dim']}" if "embed_dim" in geo else ""
    return (f"a ViT of width {geo['width']} x {geo['layers']} layers, patch {geo['patch_size']}, "
            f"image {geo['image_size']}{embed}{text}")


# ---- activation -----------------------------------------------------------------------------------------
def _tags_by_activation(arch: str) -> tuple[list[str], list[str]]:
    """(QuickGELU-trained, GELU-trained) pretrained tags open_clip lists for ``arch`` (pretrained.py)."""
    quick, gelu = [], []
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        (quick if open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False) else gelu).append(tag)
    return quick, gelu


def decide_quick_gelu(setting: Any, arch: str, weights: CheckpointWeights | None) -> tuple[bool, str]:
    """Build QuickGELU (True) or nn.GELU (False) for ``teacher.quick_gelu`` = null/auto | true | false; and why.

    auto: the weights' own sign (CheckpointWeights.quick_gelu); without one, the architecture's config when
    it says QuickGELU (``*-quickgelu``) or when open_clip knows no QuickGELU-trained weights for it; else
    refused (open_clip lists both kinds for the architecture, e.g. ViT-B-16: openai vs laion2b).
    true/false: used as given, but refused when the file says otherwise.
    """
    if setting is None:  # the config's default: null means auto
        setting = "auto"
    elif isinstance(setting, str) and setting.lower() in ("auto", "true", "false"):
        setting = "auto" if setting.lower() == "auto" else setting.lower() == "true"
    elif not isinstance(setting, bool):  # 1 / 0 / None are typos, not choices
        raise ValueError(f"teacher.quick_gelu={setting!r}: expected null (auto), true or false")
    cfg = open_clip.get_model_config(arch) or {}
    arch_quick = bool(cfg.get("quick_gelu", False))
    found = weights.quick_gelu if weights is not None else None
    if setting != "auto":
        if found is not None and found != setting:
            raise TeacherCheckpointError(
                f"teacher.quick_gelu={str(setting).lower()} contradicts teacher.checkpoint={str(weights.path)!r}: "
                f"the file is {weights.evidence} (trained with {'QuickGELU' if found else 'GELU'}); "
                "use teacher.quick_gelu=null (auto)")
        return bool(setting), f"teacher.quick_gelu={str(setting).lower()}"
    if found is not None:
        return found, weights.evidence
    if weights is None:
        return arch_quick, f"teacher.arch={arch!r}'s config (random weights)"
    if arch_quick:
        return True, f"teacher.arch={arch!r} is a QuickGELU configuration"
    quick_tags, gelu_tags = _tags_by_activation(arch)
    if not quick_tags:
        return False, f"teacher.arch={arch!r}'s config (open_clip knows no QuickGELU-trained weights for it)"
    gelu_part = f" and GELU-trained ones ({', '.join(gelu_tags[:4])}{', ...' if len(gelu_tags) > 4 else ''})" \
        if gelu_tags else ""
    raise TeacherCheckpointError(
        f"teacher.checkpoint={str(weights.path)!r}: cannot tell which activation these weights were trained "
        f"with. open_clip lists QuickGELU-trained weights for teacher.arch={arch!r} ({', '.join(quick_tags)})"
        f"{gelu_part}, and the file carries no sign of its origin (not a TorchScript archive, no OpenAI JIT "
        f"entries, no {HF_CONFIG_NAME} beside it). Set teacher.quick_gelu=true for OpenAI's weights (or the "
        "other QuickGELU-trained ones), teacher.quick_gelu=false for GELU-trained ones (e.g. LAION's)")


# ---- loading into a model -------------------------------------------------------------------------------
def _not_clip(weights: CheckpointWeights, state: Mapping[str, torch.Tensor]) -> TeacherCheckpointError:
    keys = ", ".join(list(state)[:4])
    return _fail(weights.path, f"holds {len(state)} tensors but no CLIP ViT image tower (no visual.conv1.weight / "
                               f"visual.positional_embedding; first keys: {keys})")


def _arch_error(weights: CheckpointWeights, arch: str, found: Mapping[str, int], want: Mapping[str, int] | None,
                detail: str) -> TeacherCheckpointError:
    names = [n for n in matching_archs(found) if n != arch]
    looks = f" (open_clip architectures of that shape: {', '.join(names[:6])})" if names else ""
    fix = f"Set teacher.arch={names[0]}" if names else "Set teacher.arch to the file's architecture"
    return TeacherCheckpointError(
        f"teacher.checkpoint={str(weights.path)!r} does not fit teacher.arch={arch!r}: the file holds "
        f"{_describe(found)}{looks}; teacher.arch={arch!r} is {_describe(want) if want else 'another model'}"
        f" ({detail}). {fix}")


def check_fits(weights: CheckpointWeights, arch: str) -> None:
    """Before building anything: the file holds a CLIP ViT, of ``arch``'s shape (from open_clip's config)."""
    found = geometry(weights.state_dict)
    if found is None:
        raise _not_clip(weights, weights.state_dict)
    want = _config_geometry(open_clip.get_model_config(arch) or {})
    if want is None:  # timm / HF towers: load_into's tensor-by-tensor check decides
        return
    differ = [f"{k} {found[k]} vs {want[k]}" for k in found if want.get(k) is not None and found[k] != want[k]]
    if differ:
        raise _arch_error(weights, arch, found, want, "differs in " + ", ".join(differ))


def load_into(model: nn.Module, weights: CheckpointWeights, arch: str) -> None:
    """Load ``weights`` into ``model`` (built for ``arch``) strictly, as open_clip's load_checkpoint does
    after reading (minus its positional-embedding resizing: a different grid means a different arch here).
    Any mismatch raises a TeacherCheckpointError naming the arch the file looks like."""
    state = dict(weights.state_dict)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = open_clip.model.convert_to_custom_text_state_dict(state)  # old text layout -> CustomTextCLIP
    expected = model.state_dict()
    if "logit_scale" in state and "logit_scale" in expected and state["logit_scale"].numel() == 1:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        found = geometry(state)
        if found is None:
            raise _not_clip(weights, state)
        detail = []
        if wrong:
            k = wrong[0]
            detail.append(f"{len(wrong)} tensors differ in shape, e.g. {k}: file {tuple(state[k].shape)} vs "
                          f"{tuple(expected[k].shape)}")
        if missing:
            detail.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise _arch_error(weights, arch, found, geometry(expected), "; ".join(detail))
    model.load_state_dict(state, strict=True)
