"""The toy CLIP: an open_clip model pretrained contrastively on the toy world's image-caption pairs.

As real CLIP saw the web, it sees captions of ALL classes (seen and unseen) and no masks. Each batch
mixes three kinds of pairs (fractions are config keys under ``toy_clip``):

- full images with their multi-object caption ("a red circle, a blue square and a green cross");
- single-object crops (the object's box with a random margin) with a single-object caption;
- masked single-object crops (pixels outside the object set to the normalisation mean, as the teacher's
  local CLS tokens encode regions) with a single-object caption.

Single-object pairs give the image encoder region-level semantics that the dense (MaskCLIP) tokens and
local tokens rely on later. Identical captions in a batch are merged and treated as multiple positives,
so two crops of "a red circle" are never pushed apart.

The weights are cached under ``<cache_root>/toy_clip/<key>/`` (``open_clip.pt`` a plain state dict,
``metrics.json``), keyed by the world's parameters, the pretraining parameters and the architecture,
written atomically. ``c2s world pretrain-teacher`` ends with one JSON line:
``{"zero_shot_acc": ..., "zero_shot_acc_unseen": ..., "wall_s": ...}`` (accuracies as fractions, on
held-out single-object crops of the world's val split against "a photo of a {class}." for all classes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from c2s.data.catalog import get_dataset_info
from c2s.paths import atomic_path
from c2s.world.archs import ARCHS
from c2s.world.classes import TOY_CLASSES
from c2s.world.generate import ToySample, caption_for, render, world_key, world_params

PRETRAIN_VERSION = 2  # 2: fixed step count (1 stopped at a wall-clock budget)
PROMPT = "a photo of a {}."
BACKGROUND = "background"  # the class name toy_clip.background_frac teaches (catalog "toy_stuff")

# Every knob of the pretraining; `toy_clip` in c2s/configs/_base_/datasets/toy.py overrides them.
DEFAULT_PRETRAIN: dict[str, Any] = dict(
    steps=1000,
    batch_size=48,
    lr=1.5e-3,
    weight_decay=0.1,
    warmup_steps=50,
    pool_images=3000,  # images rendered once from the world's "pretrain" stream; batches sample them
    full_frac=0.25,  # fraction of a batch that is full images with multi-object captions
    masked_frac=0.35,  # fraction that is masked single-object crops; the rest are plain crops
    crop_margin=(0.05, 0.35),  # crop box = object box grown by a random fraction in this range
    prompt_frac=0.5,  # single-object captions use "a photo of a {}." this often, "a {}" otherwise
    eval_images=300,  # val-split images whose objects are the held-out zero-shot crops
    eval_margin=0.15,
    # Fraction of a batch that is background views captioned "a photo of a background." / "a background": the
    # image with its objects blanked (0 after normalisation, as a local token's region mask does), cropped to
    # a random square of 50-100% of the side. Taken from the plain crops. 0 (the default) keeps the toy CLIP
    # of the "toy" dataset, where background is ignore; "toy_stuff" labels it a class and needs its text.
    background_frac=0.0,
    seed=0,
    threads=2,
    # "cpu" (the default, deterministic across machines) or a torch device such as "cuda": batches are drawn
    # on the CPU either way, so only the arithmetic moves. Hashed into the cache key unless "cpu".
    device="cpu",
    log_every=100,
)


def pretrain_params(pcfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``toy_clip``; an unknown key is an error naming the known ones."""
    params = dict(DEFAULT_PRETRAIN)
    for key, value in dict(pcfg or {}).items():
        if key not in DEFAULT_PRETRAIN:
            raise ValueError(f"unknown toy-CLIP key toy_clip.{key}; known: {', '.join(DEFAULT_PRETRAIN)}")
        params[key] = list(value) if isinstance(value, tuple) else value
    return params


def teacher_key(world_cfg: Mapping[str, Any] | None, pcfg: Mapping[str, Any] | None, arch: str) -> str:
    p = pretrain_params(pcfg)
    # Threads and logging change neither the data nor the maths' result in a way worth a new cache entry.
    p = {k: v for k, v in p.items() if k not in ("threads", "log_every")}
    # Keys added later are hashed only off their defaults, so keys made before they existed stay valid.
    device, background_frac = str(p.pop("device")), float(p.pop("background_frac"))
    if device != "cpu":
        p["device"] = device
    if background_frac != 0.0:
        p["background_frac"] = background_frac
    blob = json.dumps({"v": PRETRAIN_VERSION, "world": world_key(world_cfg), "pretrain": p, "arch": arch,
                       "arch_cfg": ARCHS.get(arch)}, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _sections(cfg: Mapping[str, Any]) -> tuple[dict, dict, str]:
    data = cfg.get("data", {}) or {}
    world = dict(data.get("world", {}) or {})
    pcfg = dict(cfg.get("toy_clip", {}) or {})
    teacher = cfg.get("teacher", {}) or {}
    return world, pcfg, str(teacher.get("arch", "c2s-toy-vit"))


def teacher_dir(cfg: Mapping[str, Any], cache_root: Path) -> Path:
    world, pcfg, arch = _sections(cfg)
    return Path(cache_root) / "toy_clip" / teacher_key(world, pcfg, arch)


def ensure_toy_teacher(cfg: Mapping[str, Any], cache_root: Path, *, log: Any = None) -> Path:
    """Path to the cached toy-CLIP state dict for ``cfg`` (``data.world``, ``toy_clip``, ``teacher.arch``).

    Trains it the first time (minutes) and writes it atomically; later calls return at once.
    Load with ``open_clip.create_model(arch, pretrained=path)`` (after ``c2s.teacher.archs.register()``)
    or ``torch.load(path, weights_only=True)``.
    """
    final = teacher_dir(cfg, cache_root)
    ckpt = final / "open_clip.pt"
    if ckpt.is_file():
        return ckpt
    world, pcfg, arch = _sections(cfg)
    try:
        with atomic_path(final) as tmp:
            tmp.mkdir()
            model, metrics = pretrain(world, pcfg, arch, log=log)
            torch.save(model.state_dict(), tmp / "open_clip.pt")
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    except OSError:
        # Another process renamed its copy into place first: use it.
        if not ckpt.is_file():
            raise
    return ckpt


def load_metrics(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt).parent / "metrics.json").read_text())


# --- data -------------------------------------------------------------------------------------------
class _Pool:
    """Rendered images as tensors plus each object's (image index, class, box) for crop sampling."""

    def __init__(self, samples: Sequence[ToySample]) -> None:
        self.images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
        self.masks = torch.from_numpy(np.stack([s.mask for s in samples]))
        self.captions = [s.caption for s in samples]
        objs = [(i, c, b) for i, s in enumerate(samples) for c, b in zip(s.classes, s.boxes)]
        self.obj_image = torch.tensor([o[0] for o in objs])
        self.obj_class = torch.tensor([o[1] for o in objs])
        self.obj_box = torch.tensor([o[2] for o in objs], dtype=torch.float32)


def _normalise(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - mean) / std


def _square_boxes(boxes: torch.Tensor, margin: torch.Tensor, size: int) -> torch.Tensor:
    """Grow (x0, y0, x1, y1) boxes to squares enlarged by ``margin``; may reach outside the image."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + margin)
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def crop_objects(pool: _Pool, obj_idx: torch.Tensor, margin: torch.Tensor, masked: torch.Tensor,
                 out_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised crops (n, 3, out, out) of the chosen objects; ``masked`` rows keep only the object.

    Outside the object a masked crop is 0 after normalisation (= the mean colour), like a local token.
    """
    from torchvision.ops import roi_align

    img_idx = pool.obj_image[obj_idx]
    x = _normalise(pool.images[img_idx], mean, std)
    keep = pool.masks[img_idx] == (pool.obj_class[obj_idx] + 1)[:, None, None]
    x = torch.where(masked[:, None, None, None] & ~keep[:, None], torch.zeros(()), x)
    boxes = _square_boxes(pool.obj_box[obj_idx], margin, x.shape[-1])
    rois = torch.cat([torch.arange(len(obj_idx), dtype=torch.float32)[:, None], boxes], 1)
    return roi_align(x, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def background_views(pool: _Pool, img_idx: torch.Tensor, side_frac: torch.Tensor, corner: torch.Tensor,
                     out_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised background views (n, 3, out, out): image ``img_idx`` with every object pixel set to 0 (the
    mean colour), cropped to a square of ``side_frac`` (n,) times the image side whose top-left corner sits at
    ``corner`` (n, 2) in [0, 1] of the free range."""
    from torchvision.ops import roi_align

    x = _normalise(pool.images[img_idx], mean, std)
    x = torch.where((pool.masks[img_idx] != 0)[:, None], torch.zeros(()), x)
    size = x.shape[-1]
    side = side_frac * size
    x0, y0 = corner[:, 0] * (size - side), corner[:, 1] * (size - side)
    rois = torch.stack([torch.arange(len(img_idx), dtype=torch.float32), x0, y0, x0 + side, y0 + side], 1)
    # one bilinear sample per output pixel: a view at the image's own scale is the image itself
    return roi_align(x, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


def _full_images(pool: _Pool, idx: torch.Tensor, out_size: int, mean: torch.Tensor, std: torch.Tensor
                 ) -> torch.Tensor:
    x = _normalise(pool.images[idx], mean, std)
    return F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)


class _Tokens:
    """Tokenises each distinct caption once (the world has few distinct strings)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, tok in zip(missing, self.tokenizer(missing)):
                self.cache[t] = tok
        return torch.stack([self.cache[t] for t in texts])


# --- training ---------------------------------------------------------------------------------------
def _multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, caption_ids: torch.Tensor, scale: torch.Tensor
                         ) -> torch.Tensor:
    """CLIP loss where images sharing a caption are all positives of it.

    img (B, D) and txt (U, D) normalised; caption_ids (B,) in 0..U-1 gives each image's caption.
    """
    logits = scale * img @ txt.t()  # (B, U)
    loss_i = F.cross_entropy(logits, caption_ids)
    target = F.one_hot(caption_ids, txt.shape[0]).t().float()  # (U, B)
    target = target / target.sum(1, keepdim=True)
    loss_t = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


@torch.no_grad()
def zero_shot(model: Any, tokens: _Tokens, pool: _Pool, image_size: int, mean: torch.Tensor, std: torch.Tensor,
              margin: float, masked: bool, batch: int = 256) -> dict[str, float]:
    """Accuracy of argmax over ALL classes' prompts on every object crop of ``pool`` (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    text = F.normalize(model.encode_text(tokens([PROMPT.format(c) for c in TOY_CLASSES]).to(device)), dim=-1)
    preds = []
    n = len(pool.obj_class)
    for s in range(0, n, batch):
        idx = torch.arange(s, min(s + batch, n))
        x = crop_objects(pool, idx, torch.full((len(idx),), margin), torch.full((len(idx),), masked),
                         image_size, mean, std)
        preds.append((F.normalize(model.encode_image(x.to(device)), dim=-1) @ text.t()).argmax(1).cpu())
    pred = torch.cat(preds)
    truth = pool.obj_class
    info = get_dataset_info("toy")
    unseen = torch.isin(truth, torch.tensor(info.unseen_ids))
    per_class = {TOY_CLASSES[c]: float((pred[truth == c] == c).float().mean()) for c in range(len(TOY_CLASSES))
                 if (truth == c).any()}
    model.train()
    return {"acc": float((pred == truth).float().mean()), "acc_unseen": float((pred[unseen] == truth[unseen]).float().mean()),
            "crops": int(n), "per_class": per_class}


@torch.no_grad()
def background_zero_shot(model: Any, tokens: _Tokens, pool: _Pool, image_size: int, mean: torch.Tensor,
                         std: torch.Tensor, margin: float, batch: int = 256) -> dict[str, float]:
    """Zero-shot over the 20 object prompts plus "background": the fraction of whole-image background views
    (objects blanked) read as background, and of plain object crops read as background (should stay low)."""
    model.eval()
    device = next(model.parameters()).device
    names = [*TOY_CLASSES, BACKGROUND]
    text = F.normalize(model.encode_text(tokens([PROMPT.format(c) for c in names]).to(device)), dim=-1)
    bg = len(TOY_CLASSES)

    def read(x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(model.encode_image(x.to(device)), dim=-1) @ text.t()).argmax(1).cpu()

    n_img, n_obj = len(pool.captions), len(pool.obj_class)
    views = torch.cat([read(background_views(pool, torch.arange(s, min(s + batch, n_img)),
                                             torch.ones(min(batch, n_img - s)), torch.zeros(min(batch, n_img - s), 2),
                                             image_size, mean, std)) for s in range(0, n_img, batch)])
    objs = torch.cat([read(crop_objects(pool, torch.arange(s, min(s + batch, n_obj)),
                                        torch.full((min(batch, n_obj - s),), margin),
                                        torch.zeros(min(batch, n_obj - s), dtype=torch.bool), image_size, mean, std))
                      for s in range(0, n_obj, batch)])
    model.train()
    return {"background_acc": float((views == bg).float().mean()), "object_as_background": float((objs == bg).float().mean())}


def pretrain_optimizer(decay: Sequence[torch.nn.Parameter], no_decay: Sequence[torch.nn.Parameter], lr: float,
                       weight_decay: float) -> torch.optim.AdamW:
    """AdamW, fused: the same update as the per-tensor loop in one kernel per step. The text tower's token
    embedding (49,408 x 128) is 87% of the toy CLIP's 7.25M parameters, so the per-tensor update was ~18% of
    a step on this 2-core CPU (fused: 0.0065 s against 0.071 s per step, fwd+bwd 0.32 s; one thread)."""
    return torch.optim.AdamW([{"params": list(decay), "weight_decay": weight_decay},
                              {"params": list(no_decay), "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), fused=True)


def pretrain(world_cfg: Mapping[str, Any] | None, pcfg: Mapping[str, Any] | None, arch: str = "c2s-toy-vit",
             *, log: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train the toy CLIP from scratch; returns (model, metrics). Deterministic under ``toy_clip.seed``."""
    import open_clip

    from c2s.teacher.archs import register
    from c2s.teacher.clip import _DropMessage

    t0 = time.perf_counter()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    p = pretrain_params(pcfg)
    world = world_params(world_cfg)
    torch.set_num_threads(int(p["threads"]))
    torch.manual_seed(int(p["seed"]))
    gen = torch.Generator().manual_seed(int(p["seed"]))
    register()
    # Trained from scratch on purpose: drop open_clip's "No pretrained weights loaded for model ...
    # Model initialized randomly." warning (logged on the root logger), which reads like a failure.
    quiet = _DropMessage("No pretrained weights loaded")
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(arch, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)
    device = _device(p["device"])
    model.to(device)
    tokens = _Tokens(open_clip.get_tokenizer(arch))
    size = int(model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    pool = _Pool([render(world, "pretrain", i) for i in range(int(p["pool_images"]))])
    held = _Pool([render(world, "val", i) for i in range(int(p["eval_images"]))])
    log(f"toy CLIP {arch}: pool {len(pool.captions)} images / {len(pool.obj_class)} objects, "
        f"held-out {len(held.obj_class)} crops, rendered in {time.perf_counter() - t0:.1f} s")

    decay = [q for n, q in model.named_parameters() if q.ndim >= 2 and "embedding" not in n]
    no_decay = [q for n, q in model.named_parameters() if not (q.ndim >= 2 and "embedding" not in n)]
    opt = pretrain_optimizer(decay, no_decay, float(p["lr"]), float(p["weight_decay"]))
    steps, warm, bs = int(p["steps"]), int(p["warmup_steps"]), int(p["batch_size"])
    n_full = int(round(bs * float(p["full_frac"])))
    n_mask = int(round(bs * float(p["masked_frac"])))
    n_bg = int(round(bs * float(p["background_frac"])))
    n_crop = bs - n_full - n_mask - n_bg
    if n_crop < 0:
        raise ValueError(f"toy_clip: full_frac + masked_frac + background_frac must be <= 1, got "
                         f"{p['full_frac']} + {p['masked_frac']} + {p['background_frac']}")
    lo, hi = (float(v) for v in p["crop_margin"])
    model.train()
    t_train = time.perf_counter()
    loss_avg = 0.0
    steps_done = 0
    for step in range(steps):
        # A fixed number of steps (never a wall-clock budget): the same command gives the same model on any
        # machine, under toy_clip.seed. Warm-up, then cosine decay over the remaining steps.
        if step < warm:
            lr = float(p["lr"]) * (step + 1) / max(warm, 1)
        else:
            lr = float(p["lr"]) * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        img_idx = torch.randint(len(pool.captions), (n_full,), generator=gen)
        obj_idx = torch.randint(len(pool.obj_class), (n_crop + n_mask,), generator=gen)
        margin = lo + (hi - lo) * torch.rand(n_crop + n_mask, generator=gen)
        masked = torch.arange(n_crop + n_mask) >= n_crop
        x = torch.cat([_full_images(pool, img_idx, size, mean, std),
                       crop_objects(pool, obj_idx, margin, masked, size, mean, std)])
        if n_bg:
            bg_idx = torch.randint(len(pool.captions), (n_bg,), generator=gen)
            bg_side = 0.5 + 0.5 * torch.rand(n_bg, generator=gen)
            bg_corner = torch.rand(n_bg, 2, generator=gen)
            x = torch.cat([x, background_views(pool, bg_idx, bg_side, bg_corner, size, mean, std)])
            bg_prompt = (torch.rand(n_bg, generator=gen) < float(p["prompt_frac"])).tolist()
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        use_prompt = (torch.rand(len(obj_idx), generator=gen) < float(p["prompt_frac"])).tolist()
        captions = [pool.captions[i] for i in img_idx.tolist()] + [
            PROMPT.format(TOY_CLASSES[c]) if pr else caption_for([TOY_CLASSES[c]])
            for c, pr in zip(pool.obj_class[obj_idx].tolist(), use_prompt)]
        if n_bg:
            captions += [PROMPT.format(BACKGROUND) if pr else caption_for([BACKGROUND]) for pr in bg_prompt]
        distinct = list(dict.fromkeys(captions))
        caption_ids = torch.tensor([distinct.index(c) for c in captions])
        img = F.normalize(model.encode_image(x.to(device)), dim=-1)
        txt = F.normalize(model.encode_text(tokens(distinct).to(device)), dim=-1)
        loss = _multi_positive_loss(img, txt, caption_ids.to(device), model.logit_scale.exp().clamp(max=100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps_done = step + 1
        loss_avg = 0.9 * loss_avg + 0.1 * loss.item() if step else loss.item()
        if (step + 1) % int(p["log_every"]) == 0 or step + 1 == steps:
            el = time.perf_counter() - t_train
            log(f"step {step + 1}/{steps} loss {loss_avg:.3f} lr {lr:.2e} "
                f"{(step + 1) * bs / el:.0f} pairs/s, {el:.0f} s")
    plain = zero_shot(model, tokens, held, size, mean, std, float(p["eval_margin"]), masked=False)
    masked_res = zero_shot(model, tokens, held, size, mean, std, float(p["eval_margin"]), masked=True)
    metrics = {
        "zero_shot_acc": round(plain["acc"], 4),
        "zero_shot_acc_unseen": round(plain["acc_unseen"], 4),
        "zero_shot_acc_masked": round(masked_res["acc"], 4),
        "zero_shot_acc_masked_unseen": round(masked_res["acc_unseen"], 4),
        "eval_crops": plain["crops"],
        **({k: round(v, 4) for k, v in background_zero_shot(model, tokens, held, size, mean, std,
                                                             float(p["eval_margin"])).items()} if n_bg else {}),
        "per_class": {k: round(v, 3) for k, v in plain["per_class"].items()},
        "arch": arch, "steps": steps_done, "batch_size": bs, "device": str(device),
        "train_s": round(time.perf_counter() - t_train, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    model.eval()
    return model.cpu(), metrics


def _device(name: Any) -> torch.device:
    """``toy_clip.device`` as a torch device; a CUDA device on a machine without CUDA is an error."""
    try:
        device = torch.device(str(name))
    except RuntimeError as err:
        raise ValueError(f"toy_clip.device = {name!r}: expected a torch device such as 'cpu' or 'cuda'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"toy_clip.device = {name!r}, but torch sees no CUDA device here; use toy_clip.device=cpu")
    return device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="c2s world pretrain-teacher",
                                     description="pretrain the toy CLIP on the toy world (cached)")
    parser.add_argument("--config", default="toy_c2s", help="config with data.world, toy_clip, teacher.arch")
    parser.add_argument("--force", action="store_true", help="retrain even if a cached teacher exists")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. toy_clip.steps=300")
    args = parser.parse_args(argv)
    import os

    from c2s.config import load_config
    from c2s.paths import cache_root

    cfg = load_config(args.config, args.overrides)
    root = cache_root(cfg, env=os.environ)
    t0 = time.perf_counter()
    ckpt_dir = teacher_dir(cfg, root)
    cached = (ckpt_dir / "open_clip.pt").is_file() and not args.force
    if args.force and ckpt_dir.exists():
        import shutil

        shutil.rmtree(ckpt_dir)
    ckpt = ensure_toy_teacher(cfg, root)
    metrics = load_metrics(ckpt)
    print(f"toy CLIP {'(cached) ' if cached else ''}at {ckpt}", file=sys.stderr)
    print(f"per-class zero-shot accuracy: {metrics['per_class']}", file=sys.stderr)
    print(json.dumps({"zero_shot_acc": metrics["zero_shot_acc"], "zero_shot_acc_unseen": metrics["zero_shot_acc_unseen"],
                      "zero_shot_acc_masked": metrics["zero_shot_acc_masked"],
                      "wall_s": metrics["wall_s"] if not cached else round(time.perf_counter() - t0, 1),
                      "train_wall_s": metrics["wall_s"], "cached": cached, "checkpoint": str(ckpt)}))
    return 0
