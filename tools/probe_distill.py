"""Probe trained runs of Table 4: where each distillation kind puts the student's region prototypes.

    python tools/probe_distill.py RUN_DIR [RUN_DIR ...] [--images 64] [--per-class] [--pair "A,B" ...]

For each run (a `c2s train` / sweep trial directory: its config.json and last checkpoint), on the first
``--images`` training images at eval scale, the run's teacher gives one local CLS token for every
ground-truth region, seen and unseen (the regions, not the latent mining, so every run is compared on
the same regions), and the student gives that region's prototype (Eq. 3, area-weighted mean of its features).
Printed per run:

- ``teacher``: mean cosine between tokens of *different* classes (how alike CLIP's region tokens are) and the
  share of a token's squared norm that lies along the tokens' mean direction (their common component);
- the teacher's tokens' mean cosine to their own class's text embedding (CLIP's image-text gap);
- ``student``: mean cosine between prototypes of different classes (1 = every class the same vector) and to
  the tokens' mean direction; for seen and for unseen regions apart, the prototypes' mean cosine to their own
  token (what the cosine / L2 / FROSTER losses raise) and to their own class's text, the region accuracy of the evaluator's classifier
  (argmax over ALL classes of ``proto . text``) and the share of regions it reads as a seen class.

With ``--pair "A,B"`` (repeatable), also one line per pair of classes: the cosine between the two classes' mean
teacher tokens and between their mean student prototypes (each L2-normalised, averaged over the class's regions,
normalised again): how far apart the teacher holds two classes, and how far the student does.

With ``--per-class``, also one line per unseen class: the share of its regions the teacher's token and the
student's prototype read as it (argmax over all classes), and the class each reads them as most often
(docs/demo.md: which unseen class a demo's claim lost, and whether the teacher or the student lost it).

Written to explain Table 4 on the toy world (issue 13's note of 2026-11-26 has the numbers): why the
cosine, L2 and FROSTER students, whose prototypes do move towards their tokens, still read unseen regions as
seen classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def off_diagonal_mean(sim: torch.Tensor, same: torch.Tensor) -> float:
    """Mean of ``sim`` over pairs whose ``same`` is False (different classes)."""
    pick = ~same
    return float(sim[pick].mean()) if bool(pick.any()) else float("nan")


def class_region_stats(tokens: torch.Tensor, protos: torch.Tensor, cls: torch.Tensor, text: torch.Tensor,
                       unseen: torch.Tensor) -> dict[str, float]:
    """The numbers above from matched ``tokens (N, D)``, ``protos (N, D)``, class ids ``cls (N,)`` indexing the
    text embeddings of ALL classes ``text (C, D)``, and ``unseen (C,)`` bool. The region classifier is the
    evaluator's: argmax over all classes of ``proto . text``."""
    t = F.normalize(tokens.float(), dim=-1)
    p = F.normalize(protos.float(), dim=-1)
    seen_region = ~unseen[cls]
    same = cls.unsqueeze(0) == cls.unsqueeze(1)
    mean_dir = F.normalize(t.mean(0), dim=0)
    pred = (protos.float() @ text.float().T).argmax(1)
    own_text = F.normalize(text.float(), dim=-1)[cls]  # (N, D): each region's class text
    out = {
        "regions_seen": int(seen_region.sum()), "regions_unseen": int((~seen_region).sum()),
        "teacher_cos_to_own_text": float((t * own_text).sum(-1).mean()),
        "teacher_cos_between_classes": off_diagonal_mean(t @ t.T, same),
        "teacher_common_share": float(((t @ mean_dir) ** 2).mean()),
        "proto_cos_between_classes": off_diagonal_mean(p @ p.T, same),
        "proto_cos_to_token_mean": float((p @ mean_dir).mean()),
    }
    for name, rows in (("seen", seen_region), ("unseen", ~seen_region)):
        if not bool(rows.any()):
            continue
        out[f"{name}_proto_cos_to_own_token"] = float((p[rows] * t[rows]).sum(-1).mean())
        out[f"{name}_proto_cos_to_own_text"] = float((p[rows] * own_text[rows]).sum(-1).mean())
        out[f"{name}_region_acc"] = float((pred[rows] == cls[rows]).float().mean())
        out[f"{name}_read_as_seen"] = float((~unseen[pred[rows]]).float().mean())
    return out


def unseen_class_reads(tokens: torch.Tensor, protos: torch.Tensor, cls: torch.Tensor, text: torch.Tensor,
                       unseen: torch.Tensor) -> list[dict]:
    """Per unseen class with regions (the same inputs as :func:`class_region_stats`): the share of its regions
    that the teacher's token (argmax over ALL classes of cosine to text) and the student's prototype (the
    evaluator's argmax of ``proto . text``) read as that class, and the class each reads them as most often."""
    t_pred = (F.normalize(tokens.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T).argmax(1)
    p_pred = (protos.float() @ text.float().T).argmax(1)
    out = []
    for c in torch.nonzero(unseen).flatten().tolist():
        rows = cls == c
        if not bool(rows.any()):
            continue
        n = int(rows.sum())
        t_votes = torch.bincount(t_pred[rows], minlength=len(text))
        p_votes = torch.bincount(p_pred[rows], minlength=len(text))
        out.append({"class_id": c, "regions": n,
                    "teacher_reads_own": float(t_votes[c]) / n, "teacher_reads": int(t_votes.argmax()),
                    "student_reads_own": float(p_votes[c]) / n, "student_reads": int(p_votes.argmax())})
    return out


def pair_cosines(tokens: torch.Tensor, protos: torch.Tensor, cls: torch.Tensor, pairs: list[tuple[int, int]]
                 ) -> list[dict]:
    """Per pair ``(a, b)`` of class ids: the cosine between classes a's and b's mean teacher token and between
    their mean student prototype (rows L2-normalised, averaged over the class's regions), with each class's region
    count. ``tokens``, ``protos`` ``(N, D)`` and ``cls (N,)`` as from :func:`collect_regions`; a class without
    regions gives nan."""
    unit_tokens, unit_protos = F.normalize(tokens.float(), dim=-1), F.normalize(protos.float(), dim=-1)

    def class_mean(units: torch.Tensor, c: int) -> torch.Tensor:
        rows = units[cls == c]
        return F.normalize(rows.mean(0), dim=0) if len(rows) else torch.full((units.shape[1],), float("nan"))

    out = []
    for a, b in pairs:
        out.append({"pair": (a, b), "regions": (int((cls == a).sum()), int((cls == b).sum())),
                    "teacher_cos": float(class_mean(unit_tokens, a) @ class_mean(unit_tokens, b)),
                    "student_cos": float(class_mean(unit_protos, a) @ class_mean(unit_protos, b))})
    return out


def collect_regions(run_dir: Path, images: int, batch: int) -> tuple[torch.Tensor, ...]:
    """Teacher tokens ``(N, D)``, student prototypes ``(N, D)``, class ids ``(N,)`` of the ground-truth regions of
    the run's first ``images`` training images, with the text embeddings of ALL classes ``(C, D)`` and
    ``unseen (C,)``."""
    from c2s.config import from_dict
    from c2s.data.catalog import get_dataset_info
    from c2s.data.readers import iter_samples
    from c2s.data.transforms import eval_transform
    from c2s.evaluate import find_checkpoint, load_student_from_checkpoint
    from c2s.inputs import resolve_inputs
    from c2s.method.losses import masked_mean_prototypes, region_weights
    from c2s.teacher.clip import load_teacher
    from c2s.train.resolve import text_embeddings_for

    cfg = from_dict(json.loads((run_dir / "config.json").read_text()))
    inputs = resolve_inputs(cfg)
    _, all_text = text_embeddings_for(cfg, inputs)
    info = get_dataset_info(str(cfg.data.dataset))
    unseen = torch.zeros(len(all_text), dtype=torch.bool)
    unseen[list(info.unseen_ids)] = True
    student, _, _ = load_student_from_checkpoint(find_checkpoint(run_dir))  # as `c2s eval` loads it (eval mode)
    teacher = load_teacher(cfg.teacher, "cpu")
    toks, protos, classes = [], [], []
    samples = iter_samples(info, inputs.data_root, "train")
    with torch.no_grad():
        done = 0
        while done < images:
            imgs, labels = [], []
            for image, label, _, _ in samples:
                image, label = eval_transform(image, label, cfg.data)
                imgs.append(image)
                labels.append(label.astype(np.int64))  # class ids: seen and unseen regions alike
                if len(imgs) == min(batch, images - done):
                    break
            if not imgs:
                break
            done += len(imgs)
            x = torch.from_numpy(np.stack(imgs))
            lab = torch.from_numpy(np.stack(labels))
            feats = student(student.normalize(x)).float()  # (B, D, h, w)
            for b in range(len(imgs)):
                ids = [c for c in lab[b].unique().tolist() if 0 <= c < len(all_text)]
                if not ids:
                    continue
                masks = torch.stack([lab[b] == c for c in ids])  # (R, H, W)
                tok = teacher.encode_regions(x[b:b + 1], masks, torch.zeros(len(ids), dtype=torch.long)).cpu()
                weights = region_weights(lab[b:b + 1], torch.tensor([ids]), tuple(feats.shape[-2:]))
                proto, _ = masked_mean_prototypes(feats[b:b + 1], weights)
                toks.append(tok.float())
                protos.append(proto[0])
                classes.append(torch.tensor(ids))
    return torch.cat(toks), torch.cat(protos), torch.cat(classes), all_text, unseen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--per-class", action="store_true",
                        help="also one line per unseen class: what the teacher's tokens and the student read it as")
    parser.add_argument("--pair", action="append", default=[], metavar="A,B",
                        help="two class names, comma-separated: their mean tokens' and mean prototypes' cosine "
                        "(repeatable)")
    args = parser.parse_args(argv)
    from c2s.data.catalog import get_dataset_info

    for run_dir in args.run_dirs:
        cfg = json.loads((run_dir / "config.json").read_text())
        kind = cfg["distill"]["kind"] if cfg["distill"]["enabled"] else "none (baseline)"
        names = get_dataset_info(str(cfg["data"]["dataset"])).classes
        pairs = []
        for text in args.pair:
            pair = [n.strip() for n in text.split(",")]
            if len(pair) != 2 or any(n not in names for n in pair):
                parser.error(f"--pair {text!r}: expected two of {list(names)}, comma-separated")
            pairs.append((names.index(pair[0]), names.index(pair[1])))
        regions = collect_regions(run_dir, args.images, args.batch)
        stats = class_region_stats(*regions)
        print(json.dumps({"run": str(run_dir), "distill": kind, **{k: round(v, 3) for k, v in stats.items()}}),
              flush=True)
        for row in pair_cosines(*regions[:3], pairs):
            print(json.dumps({"run": str(run_dir), "pair": [names[c] for c in row["pair"]], "regions": row["regions"],
                              "teacher_cos": round(row["teacher_cos"], 3), "student_cos": round(row["student_cos"], 3)}),
                  flush=True)
        if args.per_class:
            for row in unseen_class_reads(*regions):
                print(json.dumps({"run": str(run_dir), "class": names[row["class_id"]], "regions": row["regions"],
                                  "teacher_reads_own": round(row["teacher_reads_own"], 3),
                                  "teacher_reads": names[row["teacher_reads"]],
                                  "student_reads_own": round(row["student_reads_own"], 3),
                                  "student_reads": names[row["student_reads"]]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
