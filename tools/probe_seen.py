"""Probe Table 4 on the toy world: why the pairwise distillation losses (cosine, L2, FROSTER) cost seen classes.

    C2S_CACHE=/tmp/cache_demo python tools/probe_seen.py pixels  [--sweeps runs/sweeps] [--extra NAME=OUT_DIR ...]
    C2S_CACHE=/tmp/cache_demo python tools/probe_seen.py tokens  [--sweeps DIR] [--rows 1024] [--batches 4]
    C2S_CACHE=/tmp/cache_demo python tools/probe_seen.py val     [--sweeps runs/sweeps]
    C2S_CACHE=/tmp/cache_demo python tools/probe_seen.py margins [--extra NAME=STUDENT_PT ...]
    C2S_CACHE=/tmp/cache_demo python tools/probe_seen.py grads   [--sweeps runs/sweeps] [--batches 2] [--states RUN[@STEP] ...]

Reads the trial directories of the two sweeps (``ablation_distill``: t000 cosine, t001 L2, t002 FROSTER,
t003 ours = InfoNCE; ``ablation_modules``: t000 baseline = no distillation, no latent) and the shared
teacher token cache of the ``ablation_distill`` seed-0 config (format 2, read with pyarrow and
:func:`c2s.teacher.cache.replay_batch`: no Ray). Single process, one thread. Prints JSON lines.

``pixels`` (no model run: each run's ``final/confusion.npy``, rows = ground truth, 200 val images): the
seen-object ground-truth pixels split into correct / read as background / read as another seen class / read
as an unseen class (and for those read as unseen, whether the unseen class shares the colour or the shape);
the sIoU recomputed without the unseen ground-truth rows (what the seen classes lose to false positives from
unseen objects); per seen class the IoU deltas against the baseline and against ours (per_class.parquet).
``--extra NAME=DIR``: the same split for a folder holding a ``confusion.npy`` (tools/offline_c2s.py's --out).

``tokens``: the teacher's token statistics on ``--rows`` cached rows (mean cosine between global tokens of
different images, between local tokens of different seen classes, the share of squared norm along the
tokens' mean direction, the teacher's own zero-shot reading of seen regions over ALL class texts), and the
distillation losses of trivial students (every prototype = the mean token; random directions; each seen
region = its class's mean token) next to the trained students' (their ``metrics.jsonl`` last interval and
their final checkpoint on the same ``--batches`` cached batches of 16).

``val``: every trained student (final checkpoint, 3 seeds) on the 200 val images as ``c2s eval`` reads
them, its features as they are and with their mean over all val cells (the student's common component)
subtracted: sIoU/uIoU/hIoU and the seen-object pixels read as unseen, the share of the features' squared
norm along that mean, its cosine with the teacher's mean local token, and what it adds to the unseen
classes' logits minus the seen classes'.

``margins``: on the val seen-object pixels of each seed-0 student (and ``--extra NAME=PATH`` plain student
state dicts, e.g. tools/offline_c2s.py's student.pt), the margin of the unseen class of the same colour over
the own class, ``alpha F.(A_u - A_y)``, split into what the student's mean feature contributes (a per-class
bias shared by every pixel) and the rest; the same margin, in cosines, for the teacher's region tokens.
``structure`` lines: the mean cosine between the class means (seen objects; students: their mean feature
removed) of class pairs of the same colour, of the same shape, and of neither, for the teacher's region
tokens, the text embeddings and each student.

``grads``: at fixed student states (the baseline's final checkpoint; ours and cosine at step 150; step 0 of a
seed-0 run: the pretrained backbone and a fresh head), on
``--batches`` cached batches (images replayed, real teacher tokens), the gradient of the pixel loss and of the global and
local terms of each kind at the configured weights (the FROSTER projector of the seed-0 FROSTER run at step
150; the InfoNCE bank filled with 24 other cached global tokens), w.r.t. the student's feature map and its
parameters (the pixel loss as the state's config defines it, and for the full-C2S states also without the
latent classes, ``pixel_seen_only``): norms, cosines with the pixel-loss gradient (all cells, and the
seen-object cells), the share of each feature gradient's squared norm along the teacher tokens' mean
direction, and the first-order change of the seen-object cells' margins (best unseen-class text logit minus
own-class logit; best other seen minus own; the same-colour unseen class minus own) for a gradient-descent
step of unit learning rate on the features, and for the same-colour margin also through the parameters (one
step on all parameters: what a term does to the seen-object cells from other regions, e.g. the unseen objects'
latent slots, counts there). The cosine local term is also split exactly into its seen-region and latent-region
slots (``cosine.local.seen_slots`` + ``cosine.local.latent_slots`` = ``cosine.local``). ``--states`` probes
other runs' checkpoints instead (``RUN_DIR@STEP``, or every checkpoint a run kept), on the same batches.

Written for issue 29 item 3; the findings are in docs/table4-toy.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("cosine", "l2", "froster", "infonce")
DISTILL_TRIALS = {"cosine": "t000", "l2": "t001", "froster": "t002", "infonce": "t003"}
BATCH_KEYS = ("label", "pseudo_mask", "global", "local", "local_ids", "local_valid")
SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------------------------- helpers
def run_dirs(sweeps: Path) -> dict[str, Path]:
    """``{name: trial prefix}``: baseline, distill-only (Table 3's row 2), and the four Table 4 kinds."""
    out = {"baseline": sweeps / "ablation_modules/runs/t000", "distill_only": sweeps / "ablation_modules/runs/t001"}
    out.update({kind: sweeps / f"ablation_distill/runs/{trial}" for kind, trial in DISTILL_TRIALS.items()})
    return out


def check_variants(sweeps: Path) -> None:
    """Refuse to run when a trial's config is not the variant this probe assumes."""
    for name, prefix in run_dirs(sweeps).items():
        for seed in SEEDS:
            cfg = json.loads((Path(f"{prefix}_s{seed}") / "config.json").read_text())
            distill, latent = cfg["distill"]["enabled"], cfg["latent"]["enabled"]
            want = {"baseline": (False, False), "distill_only": (True, False)}.get(name, (True, True))
            if (distill, latent) != want or (name in KINDS and cfg["distill"]["kind"] != name):
                raise SystemExit(f"{prefix}_s{seed}: distill/latent/kind = {distill}/{latent}/"
                                 f"{cfg['distill']['kind']}, expected {name}")


def rnd(value: Any, digits: int = 4) -> Any:
    if isinstance(value, dict):
        return {k: rnd(v, digits) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, digits)
    return value


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(rnd(row)), flush=True)


def iou(conf: np.ndarray) -> np.ndarray:
    tp = np.diag(conf).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (conf.sum(0) + conf.sum(1) - tp)


# -------------------------------------------------------------------------------------------------- pixels
def pixel_breakdown(conf: np.ndarray, classes: tuple[str, ...], unseen_ids: tuple[int, ...]) -> dict[str, float]:
    """Seen-object ground-truth pixels (background excluded) by what they are read as; see the docstring."""
    n = len(classes)
    unseen = np.zeros(n, bool)
    unseen[list(unseen_ids)] = True
    bg = classes.index("background")
    obj = ~unseen & (np.arange(n) != bg)
    total = conf[obj].sum()
    correct = sum(conf[c, c] for c in np.flatnonzero(obj))
    as_bg, as_unseen = conf[obj, bg].sum(), conf[obj][:, unseen].sum()
    colour = [c.split()[0] for c in classes]
    shape = [c.split()[-1] for c in classes]
    share_colour = sum(conf[c, u] for c in np.flatnonzero(obj) for u in np.flatnonzero(unseen) if colour[c] == colour[u])
    share_shape = sum(conf[c, u] for c in np.flatnonzero(obj) for u in np.flatnonzero(unseen) if shape[c] == shape[u])
    s_iou = float(np.nanmean(iou(conf)[~unseen]) * 100)
    no_unseen_rows = conf.copy()
    no_unseen_rows[unseen] = 0
    unseen_total = conf[unseen].sum()
    return {
        "sIoU": s_iou,
        "sIoU_without_unseen_gt": float(np.nanmean(iou(no_unseen_rows)[~unseen]) * 100),
        "seen_obj_correct": correct / total, "seen_obj_as_background": as_bg / total,
        "seen_obj_as_other_seen": 1 - (correct + as_bg + as_unseen) / total, "seen_obj_as_unseen": as_unseen / total,
        "as_unseen_same_colour": share_colour / max(as_unseen, 1), "as_unseen_same_shape": share_shape / max(as_unseen, 1),
        "background_correct": conf[bg, bg] / conf[bg].sum(),
        "unseen_gt_correct": sum(conf[c, c] for c in np.flatnonzero(unseen)) / unseen_total,
        "unseen_gt_as_seen_obj": conf[unseen][:, obj].sum() / unseen_total,
    }


def cmd_pixels(sweeps: Path, extra: list[str]) -> None:
    import pandas as pd

    from c2s.world.classes import TOY_STUFF_CLASSES, TOY_UNSEEN

    unseen_ids = tuple(TOY_STUFF_CLASSES.index(c) for c in TOY_UNSEEN)
    for name, prefix in run_dirs(sweeps).items():
        rows = [pixel_breakdown(np.load(f"{prefix}_s{s}/final/confusion.npy").astype(np.int64), TOY_STUFF_CLASSES,
                                unseen_ids) for s in SEEDS]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        emit({"part": "pixels", "run": name, "seeds": len(rows), **mean,
              "seen_obj_as_unseen_per_seed": [round(r["seen_obj_as_unseen"], 3) for r in rows]})
    for spec in extra:  # NAME=DIR holding a confusion.npy (tools/offline_c2s.py's --out)
        name, folder = spec.split("=", 1)
        conf = np.load(Path(folder) / "confusion.npy").astype(np.int64)
        emit({"part": "pixels", "run": name, "seeds": 1, **pixel_breakdown(conf, TOY_STUFF_CLASSES, unseen_ids)})
    # per-class IoU deltas (mean over seeds) against the baseline and against ours
    frames = []
    for sweep in ("ablation_distill", "ablation_modules"):
        frame = pd.read_parquet(sweeps / sweep / "per_class.parquet")
        frame["run"] = sweep + "/" + frame["trial_id"].str[:4]
        frames.append(frame)
    per = pd.concat(frames).groupby(["run", "class", "seen"])["iou"].mean().unstack("run")
    names = {"ablation_modules/t000": "baseline", **{f"ablation_distill/{t}": k for k, t in DISTILL_TRIALS.items()}}
    per = per[list(names)].rename(columns=names)
    seen = per.xs(True, level="seen")
    for kind in ("cosine", "l2", "froster"):
        d_base, d_ours = seen[kind] - seen["baseline"], seen[kind] - seen["infonce"]
        emit({"part": "per_class", "run": kind, "mean_delta_vs_baseline": float(d_base.mean()),
              "mean_delta_vs_ours": float(d_ours.mean()),
              "classes_below_baseline_by_5": int((d_base < -5).sum()), "classes_above_baseline_by_5": int((d_base > 5).sum()),
              "worst3_vs_baseline": {c: round(float(v), 1) for c, v in d_base.nsmallest(3).items()},
              "best3_vs_baseline": {c: round(float(v), 1) for c, v in d_base.nlargest(3).items()},
              "worst3_vs_ours": {c: round(float(v), 1) for c, v in d_ours.nsmallest(3).items()},
              "background_delta_vs_baseline": float(d_base["background"])})


# ------------------------------------------------------------------------------------------- cache + models
class Context:
    """The seed-0 ablation_distill config, its inputs, texts and cache folder; models loaded on demand."""

    def __init__(self, sweeps: Path) -> None:
        from c2s.config import from_dict
        from c2s.data.catalog import get_dataset_info
        from c2s.inputs import resolve_inputs
        from c2s.teacher.cache import _checked_cache
        from c2s.train.resolve import text_embeddings_for

        self.sweeps = sweeps
        self.raw_cfg = json.loads((Path(f"{run_dirs(sweeps)['infonce']}_s0") / "config.json").read_text())
        self.cfg = from_dict(self.raw_cfg)
        self.inputs = resolve_inputs(self.cfg)
        self.seen_text, self.all_text = (t.float() for t in text_embeddings_for(self.cfg, self.inputs))
        self.info = get_dataset_info(str(self.cfg.data.dataset))
        self.folder, _, self.pairs = _checked_cache(self.cfg, self.inputs.data_root, self.inputs.cache_root)
        self.seen_ids = torch.tensor(self.info.seen_ids)
        self.unseen_ids = torch.tensor(self.info.unseen_ids)
        self.num_seen = len(self.info.seen_ids)
        self.bg_seen = self.info.seen_classes.index("background")

    def stored(self, start: int, count: int, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Rows ``start..start+count`` of the cache as stored (file order), Ray's tensor extension decoded."""
        import pyarrow.dataset as pads

        table = pads.dataset(str(self.folder / "data")).head(start + count, columns=list(columns)).slice(start, count)
        out = {}
        for name in columns:
            column = table.column(name).combine_chunks()
            meta = table.schema.field(name).metadata or {}
            if b"ARROW:extension:metadata" in meta:
                shape = json.loads(meta[b"ARROW:extension:metadata"])
                out[name] = column.values.to_numpy(zero_copy_only=False).reshape(len(table), *shape)
            else:
                out[name] = column.to_numpy(zero_copy_only=False)
        return out

    def batch(self, start: int, size: int = 16) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(images uint8 (B, H, W, 3), batch)`` as the training path builds it (replayed pixels, cached tokens)."""
        from c2s.teacher.cache import STORED_COLUMNS, replay_batch

        rows = replay_batch(self.stored(start, size, STORED_COLUMNS), self.info, dict(self.raw_cfg["data"]),
                            self.pairs, int(self.raw_cfg["train"]["seed"]), int(self.raw_cfg["teacher"]["ignore_index"]))
        return (torch.from_numpy(np.ascontiguousarray(rows["image"])),
                {k: torch.from_numpy(np.ascontiguousarray(rows[k])) for k in BATCH_KEYS})

    def objective(self, kind: str | None, raw_cfg: dict[str, Any] | None = None) -> torch.nn.Module:
        """The objective of ``raw_cfg`` (default: the Table 4 config), with ``distill.kind=kind`` when given."""
        from c2s.method.objective import build_objective

        cfg = copy.deepcopy(raw_cfg or self.raw_cfg)
        if kind is not None:
            cfg["distill"].update(enabled=True, kind=kind)
        return build_objective(cfg, self.seen_text).eval()

    def state(self, run: Path, step: int | None) -> dict[str, Any]:
        """The checkpoint of ``run`` at ``step`` (None: the newest)."""
        from c2s.train.checkpoint import checkpoints_newest_first, load_state

        for ckpt in checkpoints_newest_first(run):
            state = load_state(ckpt)
            if step is None or int(state["step"]) == step:
                return state
        raise SystemExit(f"{run}: no checkpoint at step {step}")

    def student(self, state: dict[str, Any], train: bool) -> torch.nn.Module:
        from c2s.student import build_student

        student = build_student({**state["config"]["model"], "pretrained": None})
        student.load_state_dict(state["student"])
        return student.train(train)


def seen_object_cells(label: torch.Tensor, size: tuple[int, int], num_seen: int, bg: int) -> torch.Tensor:
    """``(B, h, w)`` seen index of each feature cell wholly covered by one seen non-background class, else -1."""
    ids = torch.arange(num_seen)
    cover = F.adaptive_avg_pool2d((label.unsqueeze(1) == ids[None, :, None, None]).float(), size)  # (B, Ns, h, w)
    best, cls = cover.max(1)
    return torch.where((best > 0.999) & (cls != bg), cls, torch.full_like(cls, -1))


# -------------------------------------------------------------------------------------------------- tokens
def token_stats(ctx: Context, rows: int) -> dict[str, float]:
    """The teacher's tokens on ``rows`` cached rows (global and the seen-class local slots)."""
    data = ctx.stored(0, rows, ("global", "local", "local_ids", "local_valid"))
    glob = F.normalize(torch.from_numpy(data["global"].astype(np.float32)), dim=-1)
    local = torch.from_numpy(data["local"].astype(np.float32))
    ids = torch.from_numpy(data["local_ids"].astype(np.int64))
    valid = torch.from_numpy(data["local_valid"])
    tok, cls = F.normalize(local[valid], dim=-1), ids[valid]
    seen_slot = cls < ctx.num_seen
    g_sim = glob @ glob.T
    off = ~torch.eye(len(glob), dtype=torch.bool)
    u_g = F.normalize(glob.mean(0), dim=0)
    t_seen, c_seen = tok[seen_slot], cls[seen_slot]
    pick = torch.randperm(len(t_seen), generator=torch.Generator().manual_seed(0))[:2000]
    t_s, c_s = t_seen[pick], c_seen[pick]
    sim = t_s @ t_s.T
    diff_cls = c_s[:, None] != c_s[None, :]
    both_obj = (c_s[:, None] != ctx.bg_seen) & (c_s[None, :] != ctx.bg_seen)
    u_l = F.normalize(tok.mean(0), dim=0)
    text = F.normalize(ctx.all_text, dim=-1)
    catalog = ctx.seen_ids[c_seen]  # seen index -> catalog id
    logits = t_seen @ text.T
    pred = logits.argmax(1)
    is_unseen = torch.zeros(len(text), dtype=torch.bool)
    is_unseen[ctx.unseen_ids] = True
    obj = c_seen != ctx.bg_seen
    own_text = (t_seen * text[catalog]).sum(-1)
    best_unseen = logits[:, is_unseen].max(1).values
    # the same zero-shot reading after removing the tokens' common component (mean local token)
    centred = F.normalize(t_seen - tok.mean(0), dim=-1)
    pred_c = (centred @ text.T).argmax(1)
    # class means of the seen-region tokens: how alike the CLASS directions are once averaged
    means = torch.stack([F.normalize(t_seen[c_seen == c].mean(0), dim=0) for c in range(ctx.num_seen)
                         if bool((c_seen == c).any())])
    m_sim = means @ means.T
    return {
        "rows": rows, "seen_slots": int(seen_slot.sum()), "latent_slots": int((~seen_slot).sum()),
        "global_cos_between_images": float(g_sim[off].mean()),
        "global_common_share": float(((glob @ u_g) ** 2).mean()),
        "local_cos_between_seen_classes": float(sim[diff_cls].mean()),
        "local_cos_between_seen_object_classes": float(sim[diff_cls & both_obj].mean()),
        "local_cos_within_seen_class": float(sim[~diff_cls & ~torch.eye(len(t_s), dtype=torch.bool)].mean()),
        "local_common_share": float(((tok @ u_l) ** 2).mean()),
        "class_mean_tokens_cos_between_classes": float(m_sim[~torch.eye(len(means), dtype=torch.bool)].mean()),
        "global_vs_local_mean_dir_cos": float(u_g @ u_l),
        "text_cos_between_classes": float((text @ text.T)[~torch.eye(len(text), dtype=torch.bool)].mean()),
        "mean_local_dir_cos_to_text_mean": float(u_l @ F.normalize(text.mean(0), dim=0)),
        "teacher_seen_obj_token_cos_own_text": float(own_text[obj].mean()),
        "teacher_seen_obj_token_cos_best_unseen_text": float(best_unseen[obj].mean()),
        "teacher_zero_shot_seen_obj_correct": float((pred[obj] == catalog[obj]).float().mean()),
        "teacher_zero_shot_seen_obj_as_unseen": float(is_unseen[pred[obj]].float().mean()),
        "teacher_zero_shot_background_correct": float((pred[~obj] == catalog[~obj]).float().mean()),
        "teacher_centred_zero_shot_seen_obj_correct": float((pred_c[obj] == catalog[obj]).float().mean()),
        "teacher_centred_zero_shot_seen_obj_as_unseen": float(is_unseen[pred_c[obj]].float().mean()),
    }


def distill_terms(obj: torch.nn.Module, feats_or_protos: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_g, L_l)`` of ``obj`` (unweighted) given either student features (``feats``) or ready prototypes
    (``proto_global (B, D)``, ``protos (B, L, D)``), exactly as :meth:`C2SObjective._forward` calls them."""
    from c2s.method.losses import global_prototype

    if "feats" in feats_or_protos:
        reg = obj._regions(feats_or_protos["feats"], batch)
        proto = global_prototype(feats_or_protos["feats"], reg["global"], obj.distill.global_pool,
                                 obj.distill.global_attn_tau)
        protos, slot_valid = reg["protos"], reg["slot_valid"]
    else:
        proto, protos = feats_or_protos["proto_global"], feats_or_protos["protos"]
        slot_valid = batch["local_valid"].bool()
    loss_g = obj._global_loss(proto, batch["global"].float())
    loss_l = obj._local_loss(protos, batch["local"].float(), batch["local_ids"], slot_valid)
    return loss_g, loss_l


def trivial_students(ctx: Context, batch: dict[str, torch.Tensor], class_means: torch.Tensor,
                     mean_local: torch.Tensor, mean_global: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Prototypes of students that know nothing (or only the class): see the module docstring."""
    b, n_slots, d = batch["local"].shape
    gen = torch.Generator().manual_seed(1)
    ids = batch["local_ids"]
    seen_slot = ids < ctx.num_seen
    oracle = torch.where(seen_slot.unsqueeze(-1), class_means[ids.clamp(0, ctx.num_seen - 1)],
                         mean_local.expand(b, n_slots, d))
    return {
        "mean_token": {"proto_global": mean_global.expand(b, d).clone(), "protos": mean_local.expand(b, n_slots, d).clone()},
        "random": {"proto_global": F.normalize(torch.randn(b, d, generator=gen), dim=-1),
                   "protos": F.normalize(torch.randn(b, n_slots, d, generator=gen), dim=-1)},
        "class_mean_token": {"proto_global": mean_global.expand(b, d).clone(), "protos": oracle},
        "teacher_itself": {"proto_global": batch["global"].float(), "protos": batch["local"].float()},
    }


def last_logged(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    return {k: train[-1][k] for k in ("loss_global", "loss_local", "loss_pixel")} | {"step": train[-1]["step"]}


def cmd_tokens(ctx: Context, rows: int, batches: int) -> None:
    emit({"part": "teacher_tokens", **token_stats(ctx, rows)})
    data = ctx.stored(0, rows, ("global", "local", "local_ids", "local_valid"))
    local = torch.from_numpy(data["local"].astype(np.float32))
    ids = torch.from_numpy(data["local_ids"].astype(np.int64))
    valid = torch.from_numpy(data["local_valid"])
    mean_local = local[valid].mean(0)  # raw mean (tokens are unit vectors): the MSE-optimal constant
    mean_global = torch.from_numpy(data["global"].astype(np.float32)).mean(0)
    class_means = torch.stack([local[valid & (ids == c)].mean(0) for c in range(ctx.num_seen)])
    bank_rows = ctx.stored(rows, 24, ("global",))["global"].astype(np.float32)
    probe = [ctx.batch(rows + 24 + 16 * i) for i in range(batches)]  # rows no statistic above used
    objectives = {}
    for kind in KINDS:
        obj = ctx.objective(kind)
        obj.bank.enqueue(torch.from_numpy(bank_rows), gather=False)
        objectives[kind] = obj
    for kind, obj in objectives.items():
        if kind == "froster":  # the trained projector of the FROSTER run (seed 0, final)
            obj.load_state_dict(ctx.state(Path(f"{run_dirs(ctx.sweeps)['froster']}_s0"), None)["objective"], strict=False)
        sums: dict[str, list[float]] = {}
        with torch.no_grad():
            for _images, batch in probe:
                for name, protos in trivial_students(ctx, batch, class_means, mean_local, mean_global).items():
                    g, loc = distill_terms(obj, protos, batch)
                    sums.setdefault(f"{name}.global", []).append(float(g))
                    sums.setdefault(f"{name}.local", []).append(float(loc))
        row: dict[str, Any] = {"part": "loss_vs_chance", "kind": kind,
                               **{k: float(np.mean(v)) for k, v in sums.items()}}
        for seed in SEEDS:
            run = Path(f"{run_dirs(ctx.sweeps)[kind]}_s{seed}")
            logged = last_logged(run)
            row[f"logged_s{seed}"] = {k: round(float(v), 4) for k, v in logged.items()}
        # the trained seed-0 student (final checkpoint, eval mode) on the probe batches, through its own objective
        state = ctx.state(Path(f"{run_dirs(ctx.sweeps)[kind]}_s0"), None)
        student = ctx.student(state, train=False)
        own = ctx.objective(None, state["config"])
        own.load_state_dict(state["objective"])
        got_g, got_l, cos_tok, cos_mean = [], [], [], []
        with torch.no_grad():
            for images, batch in probe:
                feats = student(student.normalize(images)).float()
                g, loc = distill_terms(own, {"feats": feats}, batch)
                got_g.append(float(g))
                got_l.append(float(loc))
                reg = own._regions(feats, batch)
                p = F.normalize(reg["protos"][reg["slot_valid"]], dim=-1)
                t = F.normalize(reg["local"][reg["slot_valid"]], dim=-1)
                cos_tok.append(float((p * t).sum(-1).mean()))
                cos_mean.append(float((p @ F.normalize(mean_local, dim=0)).mean()))
        row.update({"trained_s0.global": float(np.mean(got_g)), "trained_s0.local": float(np.mean(got_l)),
                    "trained_s0.proto_cos_own_token": float(np.mean(cos_tok)),
                    "trained_s0.proto_cos_mean_token": float(np.mean(cos_mean))})
        emit(row)


# ----------------------------------------------------------------------------------------------------- val
def confusion_of(pred: torch.Tensor, label: torch.Tensor, n: int) -> np.ndarray:
    keep = label < n
    return torch.bincount(label[keep] * n + pred[keep], minlength=n * n).view(n, n).numpy()


def cmd_val(ctx: Context) -> None:
    """Each trained student (final checkpoint, eval mode) on the 200 val images, as ``c2s eval`` reads them
    (whole image, dot logits upsampled to the label), with its features as they are and with their mean over
    all val cells (the student's common component) subtracted; what that mean adds to each class's logit."""
    from c2s.world.classes import TOY_STUFF_CLASSES

    x_all, y_all = val_arrays(ctx)
    data = ctx.stored(0, 1024, ("local", "local_valid"))
    u_local = F.normalize(torch.from_numpy(data["local"].astype(np.float32))[torch.from_numpy(data["local_valid"])]
                          .mean(0), dim=0)
    n, text = len(ctx.all_text), ctx.all_text
    is_unseen = torch.zeros(n, dtype=torch.bool)
    is_unseen[ctx.unseen_ids] = True
    for name, prefix in run_dirs(ctx.sweeps).items():
        for seed in SEEDS:
            state = ctx.state(Path(f"{prefix}_s{seed}"), None)
            student = ctx.student(state, train=False)
            alpha = float(state["config"]["loss"]["alpha"])
            assert state["config"]["loss"]["seen_logits"] == "dot"
            with torch.no_grad():
                feats = torch.cat([student(student.normalize(x_all[i:i + 50])).float() for i in range(0, len(x_all), 50)])
            mu = feats.mean(dim=(0, 2, 3))
            cell = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
            row: dict[str, Any] = {"part": "val", "run": name, "seed": seed,
                                   "feat_norm": float(cell.norm(dim=1).mean()),
                                   "common_share_of_feat_sq": float(((cell @ F.normalize(mu, dim=0)) ** 2).sum()
                                                                    / (cell ** 2).sum()),
                                   "common_dir_cos_teacher_mean_token": float(F.normalize(mu, dim=0) @ u_local)}
            bias = alpha * (text @ mu)  # what the common component adds to each class's logit
            row["common_bias_unseen_minus_seen"] = float(bias[is_unseen].mean() - bias[~is_unseen].mean())
            row["common_bias_unseen_minus_seen_obj"] = float(
                bias[is_unseen].mean() - bias[~is_unseen & (torch.arange(n) != TOY_STUFF_CLASSES.index("background"))].mean())
            for variant, f in (("as_is", feats), ("common_removed", feats - mu[None, :, None, None])):
                with torch.no_grad():
                    logits = alpha * torch.einsum("bdhw,nd->bnhw", f, text)
                    logits = F.interpolate(logits, size=y_all.shape[-2:], mode="bilinear", align_corners=False)
                conf = confusion_of(logits.argmax(1).flatten(), y_all.flatten(), n)
                got = pixel_breakdown(conf, TOY_STUFF_CLASSES, tuple(ctx.info.unseen_ids))
                per = iou(conf)
                s, u = float(np.nanmean(per[~is_unseen.numpy()]) * 100), float(np.nanmean(per[is_unseen.numpy()]) * 100)
                row[variant] = {"sIoU": s, "uIoU": u, "hIoU": 2 * s * u / (s + u),
                                "seen_obj_correct": got["seen_obj_correct"],
                                "seen_obj_as_unseen": got["seen_obj_as_unseen"],
                                "unseen_gt_correct": got["unseen_gt_correct"]}
            emit(row)


def same_colour_unseen(ctx: Context) -> torch.Tensor:
    """``(C,)`` catalog id of the unseen class with each class's colour (the toy world has one per colour)."""
    classes = ctx.info.classes
    by_colour = {classes[u].split()[0]: u for u in ctx.info.unseen_ids}
    return torch.tensor([by_colour.get(c.split()[0], -1) for c in classes])


def relation_cos(vectors: torch.Tensor, ids: list[int], classes: tuple[str, ...]) -> dict[str, float]:
    """Mean cosine between the rows of ``vectors`` (one per class id in ``ids``) over class pairs of the same
    colour, of the same shape, and of neither (toy world names: "<colour> <shape>")."""
    unit = F.normalize(vectors.float(), dim=-1)
    sim = unit @ unit.T
    out: dict[str, list[float]] = {"same_colour": [], "same_shape": [], "neither": []}
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            if j <= i:
                continue
            ca, sa = classes[a].split()[0], classes[a].split()[-1]
            cb, sb = classes[b].split()[0], classes[b].split()[-1]
            key = "same_colour" if ca == cb else "same_shape" if sa == sb else "neither"
            out[key].append(float(sim[i, j]))
    return {f"cos_{k}": float(np.mean(v)) for k, v in out.items()}


def cmd_margins(ctx: Context, extra: list[str]) -> None:
    """On the val seen-object pixels: the margin of the same-colour unseen class over the own class,
    ``alpha F.(A_u - A_y)``, split into the part of the student's mean feature ``mu`` (over all val cells: a
    per-class bias shared by every pixel) and the part of ``F - mu``; and the same margin for the teacher."""

    x_all, y_all = val_arrays(ctx)
    text, partner = ctx.all_text, same_colour_unseen(ctx)
    bg = ctx.info.classes.index("background")
    is_seen_obj = torch.ones(len(text), dtype=torch.bool)
    is_seen_obj[ctx.unseen_ids] = False
    is_seen_obj[bg] = False
    # the teacher: its mean local token and its seen-object region tokens (cached rows), same margin in cosines
    data = ctx.stored(0, 1024, ("local", "local_ids", "local_valid"))
    valid = torch.from_numpy(data["local_valid"])
    tok = F.normalize(torch.from_numpy(data["local"].astype(np.float32))[valid], dim=-1)
    cls = torch.from_numpy(data["local_ids"].astype(np.int64))[valid]
    u_local = F.normalize(tok.mean(0), dim=0)
    seen_slot = cls < ctx.num_seen
    cat = ctx.seen_ids[cls[seen_slot]]
    obj = is_seen_obj[cat]
    t, y = tok[seen_slot][obj], cat[obj]
    diff = F.normalize(text, dim=-1)[partner[y]] - F.normalize(text, dim=-1)[y]
    emit({"part": "margins", "run": "teacher_tokens", "margin_mean": float((t * diff).sum(-1).mean()),
          "frac_unseen_wins": float(((t * diff).sum(-1) > 0).float().mean()),
          "common_part_mean": float((diff @ u_local).mean()),
          "rest_part_mean": float(((t - (t @ u_local)[:, None] * u_local) * diff).sum(-1).mean())})
    obj_ids = [int(c) for c in torch.nonzero(is_seen_obj).flatten()]
    means = torch.stack([t[y == c].mean(0) for c in obj_ids])
    emit({"part": "structure", "run": "teacher_tokens_class_means", **relation_cos(means, obj_ids, ctx.info.classes)})
    emit({"part": "structure", "run": "teacher_tokens_class_means_centred",
          **relation_cos(means - tok.mean(0), obj_ids, ctx.info.classes)})
    emit({"part": "structure", "run": "text", **relation_cos(text[obj_ids], obj_ids, ctx.info.classes)})
    students: list[tuple[str, torch.nn.Module]] = []
    for name, prefix in run_dirs(ctx.sweeps).items():
        students.append((f"{name}_s0", ctx.student(ctx.state(Path(f"{prefix}_s0"), None), train=False)))
    from c2s.student import build_student

    for spec in extra:  # NAME=PATH of a plain student state dict (tools/offline_c2s.py's student.pt)
        name, path = spec.split("=", 1)
        student = build_student({**ctx.raw_cfg["model"], "pretrained": None})
        student.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        students.append((name, student.eval()))
    alpha = float(ctx.raw_cfg["loss"]["alpha"])
    keep_all = is_seen_obj[y_all.clamp(0, len(text) - 1)] & (y_all < len(text))  # (N, H, W) seen-object pixels
    yy = y_all[keep_all]
    d_cls = alpha * (text[partner.clamp(min=0)] - text)  # (C, D): partner minus own, per own class
    for name, student in students:
        total, count = torch.zeros(text.shape[1]), 0
        margins, own_logit, partner_logit, class_sum = [], [], [], torch.zeros(len(text), text.shape[1])
        with torch.no_grad():
            for i in range(0, len(x_all), 20):  # features upsampled to the label, 20 images at a time
                feats = student(student.normalize(x_all[i:i + 20])).float()
                feats = F.interpolate(feats, size=y_all.shape[-2:], mode="bilinear", align_corners=False)
                total += feats.sum(dim=(0, 2, 3))
                count += feats.shape[0] * feats.shape[2] * feats.shape[3]
                keep = keep_all[i:i + 20]
                pix, y = feats.permute(0, 2, 3, 1)[keep], y_all[i:i + 20][keep]
                margins.append((pix * d_cls[y]).sum(-1))
                own_logit.append((pix * alpha * text[y]).sum(-1))
                partner_logit.append((pix * alpha * text[partner[y]]).sum(-1))
                class_sum.index_add_(0, y, pix)
        mu = total / count
        margin = torch.cat(margins)
        common = (d_cls @ mu)[yy]  # the mean feature's part: a bias that depends on the class only
        emit({"part": "margins", "run": name, "pixels": len(yy), "margin_mean": float(margin.mean()),
              "frac_unseen_wins": float((margin > 0).float().mean()),
              "common_part_mean": float(common.mean()), "rest_part_mean": float((margin - common).mean()),
              "frac_unseen_wins_without_common": float(((margin - common) > 0).float().mean()),
              "own_logit_mean": float(torch.cat(own_logit).mean()),
              "partner_logit_mean": float(torch.cat(partner_logit).mean())})
        counts = torch.bincount(yy, minlength=len(text)).float()
        means = torch.stack([class_sum[c] / counts[c] - mu for c in obj_ids])  # class means, common part removed
        emit({"part": "structure", "run": name, **relation_cos(means, obj_ids, ctx.info.classes)})


# --------------------------------------------------------------------------------------------------- grads
def flat_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def grads_at(ctx: Context, label: str, state: dict[str, Any], froster_state: dict[str, Any],
             probe: list[tuple[torch.Tensor, dict[str, torch.Tensor]]], bank: torch.Tensor,
             u_local: torch.Tensor) -> None:
    """Every term's gradient at ``state`` (see the module docstring); one JSON line per term."""
    student = ctx.student(state, train=True)  # training mode: batch statistics, as the step computes them
    params = [p for p in student.parameters() if p.requires_grad]
    own = ctx.objective(None, state["config"])
    own.load_state_dict(state["objective"])
    seen_cfg = copy.deepcopy(state["config"])
    seen_cfg["distill"]["enabled"], seen_cfg["latent"]["enabled"] = False, False
    seen_only = ctx.objective(None, seen_cfg)
    seen_only.load_state_dict({k: v for k, v in state["objective"].items() if k == "logit_bias"}, strict=False)
    kinds = {}
    for kind in KINDS:
        obj = ctx.objective(kind)
        obj.bank.enqueue(bank, gather=False)
        if kind == "froster":
            obj.load_state_dict(froster_state["objective"], strict=False)
        kinds[kind] = obj
    w = own.loss
    text = F.normalize(ctx.all_text, dim=-1) if w.seen_logits == "cos" else ctx.all_text
    is_unseen = torch.zeros(len(text), dtype=torch.bool)
    is_unseen[ctx.unseen_ids] = True
    acc: dict[str, dict[str, list[float]]] = {}
    for images, batch in probe:
        feats = student(student.normalize(images)).float()
        terms: dict[str, torch.Tensor] = {}
        out = own(feats, batch)
        terms["pixel"] = w.w_pixel * out["loss_pixel"]
        if own.latent.enabled:
            terms["pixel_seen_only"] = w.w_pixel * seen_only(feats, batch)["loss_pixel"]
        for kind, obj in kinds.items():
            g, loc = distill_terms(obj, {"feats": feats}, batch)
            terms[f"{kind}.global"] = obj.loss.w_global * g
            terms[f"{kind}.local"] = obj.loss.w_local * loc
        # the cosine local term split exactly into its seen-region and latent-region (unseen object) slots:
        # a mean over N pairs = (n_seen / N) mean over the seen slots + (n_latent / N) mean over the latent ones
        obj = kinds["cosine"]
        reg = obj._regions(feats, batch)
        valid, seen_slot = reg["slot_valid"], reg["local_ids"] < ctx.num_seen
        n = valid.sum().clamp_min(1)
        for part, keep in (("seen_slots", valid & seen_slot), ("latent_slots", valid & ~seen_slot)):
            terms[f"cosine.local.{part}"] = obj.loss.w_local * (keep.sum() / n) * obj._local_loss(
                reg["protos"], reg["local"], reg["local_ids"], keep)
        cells = seen_object_cells(batch["label"], tuple(feats.shape[-2:]), ctx.num_seen, ctx.bg_seen)
        on = cells >= 0  # (B, h, w)
        own_cls = ctx.seen_ids[cells.clamp(min=0)]  # catalog id of each cell's class
        partner = same_colour_unseen(ctx)[own_cls]  # the unseen class of the cell's colour
        # the same-colour unseen class's margin over the own class, summed over the seen-object cells, and its
        # gradient w.r.t. the parameters: a term's first-order effect on it THROUGH THE PARAMETERS counts what
        # the term does to these cells from other regions (e.g. the latent slots) too
        f_on = feats.permute(0, 2, 3, 1)[on]
        margin_sum = w.alpha * (f_on * (text[partner[on]] - text[own_cls[on]])).sum()
        got_m = torch.autograd.grad(margin_sum, params, retain_graph=True, allow_unused=True)
        grad_margin = torch.cat([(g if g is not None else torch.zeros_like(q)).flatten() for g, q in zip(got_m, params)])
        with torch.no_grad():
            f = F.normalize(feats, dim=1) if w.seen_logits == "cos" else feats
            logits = w.alpha * torch.einsum("bdhw,nd->bnhw", f, text)
            best_unseen = logits[:, is_unseen].argmax(1)  # index within the unseen ids
            u_star = ctx.unseen_ids[best_unseen]
            seen_logits = logits[:, ctx.seen_ids].clone()
            seen_logits.scatter_(1, cells.clamp(min=0).unsqueeze(1), float("-inf"))
            s_star = ctx.seen_ids[seen_logits.argmax(1)]
            base_unseen_wins = float((logits.gather(1, u_star.unsqueeze(1))[:, 0]
                                      > logits.gather(1, own_cls.unsqueeze(1))[:, 0])[on].float().mean())
        grads: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        names = list(terms)
        for i, name in enumerate(names):
            got = torch.autograd.grad(terms[name], [feats, *params], retain_graph=i < len(names) - 1, allow_unused=True)
            flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(got[1:], params)])
            grads[name] = (got[0].detach(), flat)
        g_pix, p_pix = grads["pixel"]
        mask = on.unsqueeze(1).expand_as(g_pix)
        for name, (g, p) in grads.items():
            step = -g  # gradient descent on the features, unit learning rate
            # first-order change of the margins on seen-object cells (positive = towards the mistake)
            a_u, a_y, a_s = text[u_star], text[own_cls], text[s_star]  # (B, h, w, D)
            d = step.permute(0, 2, 3, 1)
            if w.seen_logits == "cos":  # project out the radial part: cos logits see the direction only
                unit = F.normalize(feats.detach(), dim=1).permute(0, 2, 3, 1)
                norm = feats.detach().norm(dim=1).unsqueeze(-1)
                d = (d - (d * unit).sum(-1, keepdim=True) * unit) / norm
            dm_unseen = (w.alpha * (d * (a_u - a_y)).sum(-1))[on]
            dm_seen = (w.alpha * (d * (a_s - a_y)).sum(-1))[on]
            along = (g.permute(0, 2, 3, 1) @ u_local) ** 2
            row = {
                "loss": float(terms[name].detach()), "feat_grad_norm": float(g.norm()), "param_grad_norm": float(p.norm()),
                "feat_cos_with_pixel": flat_cos(g, g_pix), "param_cos_with_pixel": flat_cos(p, p_pix),
                "feat_cos_with_pixel_on_seen_obj": flat_cos(g[mask], g_pix[mask]),
                "seen_obj_share_of_grad_sq": float((g[mask] ** 2).sum() / (g ** 2).sum().clamp_min(1e-30)),
                "common_dir_share_of_grad_sq": float(along.sum() / (g ** 2).sum().clamp_min(1e-30)),
                "seen_obj_dmargin_unseen_minus_own_sum": float(dm_unseen.sum()),
                "seen_obj_dmargin_partner_minus_own_sum": float((w.alpha * (d * (text[partner] - a_y)).sum(-1))[on].sum()),
                "seen_obj_param_dmargin_partner_minus_own": float(-(p * grad_margin).sum()),
                "seen_obj_dmargin_other_seen_minus_own_sum": float(dm_seen.sum()),
                "seen_obj_frac_cells_towards_unseen": float((dm_unseen > 0).float().mean()),
                "base_unseen_beats_own_on_seen_obj": base_unseen_wins,
            }
            for k, v in row.items():
                acc.setdefault(name, {}).setdefault(k, []).append(v)
    for name, values in acc.items():
        emit({"part": "grads", "state": label, "term": name, **{k: float(np.mean(v)) for k, v in values.items()}})


def parse_state(text: str) -> tuple[Path, int | None]:
    """``RUN_DIR`` or ``RUN_DIR@STEP`` (``--states``): a run folder and the step of its checkpoint to probe
    (None: every checkpoint the run kept)."""
    path, sep, step = text.rpartition("@")
    if not sep:
        return Path(text), None
    if not step.isdigit():
        raise SystemExit(f"--states {text!r}: expected RUN_DIR or RUN_DIR@STEP with STEP a whole number")
    return Path(path), int(step)


def cmd_grads(ctx: Context, batches: int, rows: int, states: list[str] = ()) -> None:
    runs = run_dirs(ctx.sweeps)
    data = ctx.stored(0, rows, ("local", "local_valid"))
    u_local = F.normalize(torch.from_numpy(data["local"].astype(np.float32))[torch.from_numpy(data["local_valid"])]
                          .mean(0), dim=0)
    bank = torch.from_numpy(ctx.stored(rows, 24, ("global",))["global"].astype(np.float32))
    probe = [ctx.batch(rows + 24 + 16 * i) for i in range(batches)]
    froster = ctx.state(Path(f"{runs['froster']}_s0"), 150)
    if states:  # other runs' states (e.g. the schedule probe's, docs/table3-toy.md) on the same batches
        from c2s.train.checkpoint import checkpoints_newest_first, load_state

        for text in states:
            run, step = parse_state(text)
            picked = [ctx.state(run, step)] if step is not None else [load_state(c) for c in checkpoints_newest_first(run)]
            for state in picked:
                grads_at(ctx, f"{run.name}_step{int(state['step'])}", state, froster, probe, bank, u_local)
        return
    grads_at(ctx, "baseline_s0_final", ctx.state(Path(f"{runs['baseline']}_s0"), None), froster, probe, bank, u_local)
    grads_at(ctx, "ours_s0_step150", ctx.state(Path(f"{runs['infonce']}_s0"), 150), froster, probe, bank, u_local)
    grads_at(ctx, "cosine_s0_step150", ctx.state(Path(f"{runs['cosine']}_s0"), 150), froster, probe, bank, u_local)
    grads_at(ctx, "init_seed0", init_state(ctx, "cosine"), froster, probe, bank, u_local)


def init_state(ctx: Context, kind: str) -> dict[str, Any]:
    """Step 0 of a Table 4 run (seed 0): the pretrained toy backbone, a fresh head and objective. Not the runs'
    own initial weights (not saved), the same recipe."""
    from c2s.student import build_student

    cfg = copy.deepcopy(ctx.raw_cfg)
    cfg["distill"]["kind"] = kind
    torch.manual_seed(int(cfg["train"]["seed"]))
    student = build_student(cfg["model"])
    return {"config": cfg, "student": student.state_dict(), "objective": ctx.objective(None, cfg).state_dict()}


def val_arrays(ctx: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation images (N, 3, H, W) and labels (N, H, W) at eval scale, as ``c2s eval`` reads them."""
    from c2s.data.readers import iter_samples
    from c2s.data.transforms import eval_transform

    images, labels = [], []
    for image, label, _, _ in iter_samples(ctx.info, ctx.inputs.data_root, "val"):
        image, label = eval_transform(image, label, ctx.raw_cfg["data"])
        images.append(image)
        labels.append(label.astype(np.int64))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("pixels", "tokens", "val", "margins", "grads"))
    parser.add_argument("--sweeps", type=Path, default=Path("runs/sweeps"),
                        help="folder of the sweeps ablation_distill/ and ablation_modules/ (default: the book's runs/sweeps)")
    parser.add_argument("--rows", type=int, default=1024, help="cached rows for the token statistics")
    parser.add_argument("--extra", nargs="*", default=[], help="pixels: NAME=DIR with a confusion.npy; margins: NAME=PATH student state dicts")
    parser.add_argument("--batches", type=int, default=2, help="cached batches of 16 for losses / gradients")
    parser.add_argument("--states", nargs="*", default=[], help="grads: RUN_DIR[@STEP] states to probe instead of "
                        "Table 4's (every checkpoint the run kept when no @STEP)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    check_variants(args.sweeps)
    if args.part == "pixels":
        cmd_pixels(args.sweeps, args.extra)
        return 0
    ctx = Context(args.sweeps)
    if args.part == "tokens":
        cmd_tokens(ctx, args.rows, args.batches)
    elif args.part == "val":
        cmd_val(ctx)
    elif args.part == "margins":
        cmd_margins(ctx, args.extra)
    else:
        cmd_grads(ctx, args.batches, args.rows, args.states)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
