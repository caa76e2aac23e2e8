"""Developer probe: train a student in-process from a token cache (no Ray), evaluate it, and say how its
pixels are confused. For fast loss/recipe experiments on the toy world (about 4x faster than a Ray run
on 2 CPUs, because CLIP does not compete with the student).

    C2S_CACHE=... c2s tokens toy_c2s teacher.cache_epochs=3          # once: the cache this reads
    C2S_CACHE=... python tools/offline_c2s.py toy_c2s --out /tmp/probe/c2s teacher.cache_epochs=3 loss.w_local=2
    C2S_CACHE=... python tools/offline_c2s.py toy_baseline --out /tmp/probe/base teacher.cache_epochs=3

``--init FILE`` starts the student from a state dict (``--init-part backbone`` keeps only backbone keys).
Prints a progress line every 50 steps (mean losses, and the global distillation's health on that step's
batch: c2s.method.diagnostics.global_distill_stats) and a JSON line last: sIoU/uIoU/hIoU plus, on the toy world, for
seen and unseen pixels the fraction predicted correctly, as an unseen class, with the right colour and
with the right shape. It follows the training loop's recipe (AdamW groups, schedule, clipping) but is
not the training job: no DDP, no checkpoints, the cached rows shuffled in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

TENSOR_KEYS = ("label", "global", "local", "local_ids", "local_valid", "pseudo_mask")


def load_rows(folder: Path) -> dict[str, np.ndarray]:
    """All rows of a FORMAT-1 cache (pixels stored) as arrays (N, ...), shapes from the Ray tensor extension
    metadata. Format 2 (no pixels) is read with c2s.teacher.cache.load_token_cache."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(folder / "data")).to_table()
    rows: dict[str, np.ndarray] = {}
    for name in ("image", *TENSOR_KEYS):
        column = table.column(name).combine_chunks()
        shape = json.loads(table.schema.field(name).metadata[b"ARROW:extension:metadata"])
        rows[name] = column.values.to_numpy(zero_copy_only=False).reshape(len(table), *shape)
    return rows


def confusion_summary(conf: np.ndarray, classes: tuple[str, ...], unseen: tuple[int, ...]) -> dict:
    """Toy world: class names are "<colour> <shape>"; rows of ``conf`` are ground truth."""
    colour = [n.split()[0] for n in classes]
    shape = [n.split()[-1] for n in classes]
    is_unseen = np.isin(np.arange(len(classes)), unseen)
    out = {}
    for group, rows in (("seen", np.where(~is_unseen)[0]), ("unseen", np.where(is_unseen)[0])):
        total = max(conf[rows].sum(), 1)
        out[group] = {
            "correct": round(float(sum(conf[c, c] for c in rows) / total), 3),
            "as_unseen": round(float(conf[rows][:, is_unseen].sum() / total), 3),
            "colour_ok": round(float(sum(conf[c, d] for c in rows for d in range(len(classes))
                                         if colour[c] == colour[d]) / total), 3),
            "shape_ok": round(float(sum(conf[c, d] for c in rows for d in range(len(classes))
                                        if shape[c] == shape[d]) / total), 3),
        }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, default=None)
    parser.add_argument("--init-part", choices=("all", "backbone"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after --out

    from c2s.config import load_config
    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import iter_samples
    from c2s.data.transforms import eval_transform
    from c2s.evaluate import evaluate_student, predict
    from c2s.inputs import resolve_inputs
    from c2s.method.diagnostics import global_distill_stats
    from c2s.method.objective import build_objective
    from c2s.student import build_student
    from c2s.teacher.cache import TokenCacheError, cache_dir, load_token_cache, old_cache_dirs
    from c2s.train.resolve import text_embeddings_for
    from c2s.train.schedule import build_optimizer
    from c2s.world.classes import is_toy_world

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    inputs = resolve_inputs(cfg)
    seen_text, all_text = text_embeddings_for(cfg, inputs)
    folder = cache_dir(cfg, inputs.data_root, inputs.cache_root)
    old = old_cache_dirs(cfg, inputs.data_root, inputs.cache_root)
    if not folder.is_dir() and old and json.loads((old[-1] / "manifest.json").read_text()).get("version") == 1:
        # A probe may still read a format-1 cache (pixels stored): same rows, fp32 tokens.
        print(f"[offline] reading the format-1 token cache {old[-1]} (pixels stored)", flush=True)
        rows = load_rows(old[-1])
    elif folder.is_dir():
        rows = load_token_cache(cfg, inputs.data_root, inputs.cache_root)  # format 2: pixels replayed
    else:
        raise TokenCacheError(f"no token cache at {folder}; build it with `c2s tokens {args.config} <same overrides>`")
    n = len(rows["image"])

    seed = int(cfg.train.seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    student, objective = build_student(cfg.model), build_objective(cfg, seen_text)
    if args.init is not None:
        state = torch.load(args.init, map_location="cpu", weights_only=True)
        if args.init_part == "backbone":
            state = {k: v for k, v in state.items() if k.startswith("backbone.")}
        missing = student.load_state_dict(state, strict=False)
        print(f"[offline] init from {args.init} ({args.init_part}): {missing}", flush=True)
    lr, mult, wd = float(cfg.optim.lr), float(cfg.optim.head_lr_mult), float(cfg.optim.weight_decay)
    groups = student.param_groups(lr, mult, wd)
    extra = [p for p in objective.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": lr * mult, "weight_decay": wd})
    total, batch_size = int(cfg.train.iters), int(cfg.train.batch_size)
    optimizer, scheduler = build_optimizer(groups, cfg.optim, total)
    params = [p for g in groups for p in g["params"]]

    order, pos, sums, count, started = rng.permutation(n), 0, {}, 0, time.perf_counter()
    for step in range(1, total + 1):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = np.sort(order[pos:pos + batch_size])
        pos += batch_size
        batch = {k: torch.from_numpy(np.ascontiguousarray(rows[k][idx])) for k in TENSOR_KEYS}
        feats = student(student.normalize(torch.from_numpy(rows["image"][idx]))).float()
        if step % 50 == 0 or step == 1:  # before the step enqueues this batch: the bank the loss sees
            diag = global_distill_stats(feats.detach(), batch["global"], objective.bank.get(),
                                        objective.distill.global_pool, objective.distill.global_attn_tau)
        out = objective(feats, batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if float(cfg.optim.grad_clip) > 0:
            torch.nn.utils.clip_grad_norm_(params, float(cfg.optim.grad_clip))
        optimizer.step()
        scheduler.step()
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        count += 1
        if step % 50 == 0 or step == total:
            print(f"[offline] step {step}/{total} {time.perf_counter() - started:.0f}s "
                  + " ".join(f"{k}={v / count:.3f}" for k, v in sums.items())
                  + " | " + " ".join(f"{k}={v:.3f}" for k, v in diag.items()), flush=True)
            sums, count = {}, 0
    train_s = time.perf_counter() - started

    student.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(student.state_dict(), args.out / "student.pt")
    torch.save(objective.state_dict(), args.out / "objective.pt")  # logit bias, generator, bank: for probes
    metrics = evaluate_student(student, all_text, cfg, inputs.data_root, args.out, panels=True)
    result = {"config": args.config, "overrides": args.overrides, "train_s": round(train_s, 1),
              **{k: round(v, 2) for k, v in metrics.items()}}
    info = get_dataset_info(cfg.data.dataset)
    if is_toy_world(info.name):
        conf = np.zeros((len(info.classes),) * 2, np.int64)
        with torch.no_grad():
            for image, label, _, _ in iter_samples(info, inputs.data_root, "val"):
                image, label = eval_transform(image, label, cfg.data)
                pred = predict(student, image, all_text, float(cfg.loss.alpha), cfg.evaluation, "cpu",
                               str(cfg.loss.seen_logits))
                keep = label < len(info.classes)
                np.add.at(conf, (label[keep], pred[keep]), 1)
        result["pixels"] = confusion_summary(conf, info.classes, info.unseen_ids)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
