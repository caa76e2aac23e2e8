"""Probe the toy world's zero-shot split: how much of each unseen class's text embedding the seen classes give.

    C2S_CACHE=/tmp/cache_demo python tools/probe_compositional.py [CONFIG] [overrides ...]

The toy world names every object class "<colour> <shape>" and each unseen class shares its colour with seen
classes and its shape with others. This fits each text embedding (the config's teacher and templates, as
training reads them; L2-normalised) as a sum of a colour vector and a shape vector, by least squares on the
SEEN object classes only, then predicts each unseen class's embedding from its colour and shape and prints
the cosine of the prediction with the real embedding, next to the largest cosine of that real embedding with
any seen class's. A cosine near 1 means a student whose features separate colour and shape, trained on the
seen texts alone, already scores the unseen class without ever seeing it: zero-shot by composition, which a
split such as COCO-Stuff's (frisbee, cow, ... among 171 classes) does not offer. One JSON line per unseen
class and a summary line.

Each unseen line also gives the *analogy margin*: for unseen "c s", every seen trio "c s'", "c' s", "c' s'"
gives the analogy text(c s') + text(c' s) - text(c' s'); the margin is its cosine with "c s"'s text minus its
largest cosine with any other class's (background included), averaged over the trios. A positive margin means
the analogy picks the unseen class out of all the others, as an argmax over texts does at evaluation.

Written for issue 29 item 3; the findings are in docs/table3-toy.md. The analogy margin was added for issue
27: docs/demo.md relates it to both students' unseen IoU over four toy CLIPs.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F


def compositional_fit(text: np.ndarray, names: list[str], fit_ids: list[int],
                      predict_ids: list[int]) -> dict[int, np.ndarray]:
    """Least-squares ``text[c] ~ colour[c] + shape[c]`` over ``fit_ids``; the predictions for ``predict_ids``.

    ``text (C, D)``; ``names[c]`` = "<colour> <shape>". A colour or shape that appears in no fitted class
    raises ValueError (nothing to predict it from)."""
    colours = sorted({names[c].split()[0] for c in fit_ids})
    shapes = sorted({names[c].split()[-1] for c in fit_ids})

    def design(c: int) -> np.ndarray:
        colour, shape = names[c].split()[0], names[c].split()[-1]
        if colour not in colours or shape not in shapes:
            raise ValueError(f"class {names[c]!r}: its colour or shape is in no fitted class")
        row = np.zeros(len(colours) + len(shapes))
        row[colours.index(colour)] = 1.0
        row[len(colours) + shapes.index(shape)] = 1.0
        return row

    x = np.stack([design(c) for c in fit_ids])
    coef, *_ = np.linalg.lstsq(x, text[fit_ids], rcond=None)
    return {c: design(c) @ coef for c in predict_ids}


def analogy_margin(text: np.ndarray, names: list[str], seen_ids: list[int], target: int) -> float:
    """Mean over seen trios of cos(analogy, text[target]) - max over classes k != target of cos(analogy, text[k]).

    ``text (C, D)`` L2-normalised rows; ``names[c]`` = "<colour> <shape>" for object classes (others, such as
    "background", are only competitors). For ``target`` = "c s", each pair c' != c, s' != s whose three classes
    "c s'", "c' s", "c' s'" are all in ``seen_ids`` gives ``a = text[c s'] + text[c' s] - text[c' s']``. No such
    trio raises ValueError."""
    colour, shape = names[target].split()
    by_name = {n: i for i, n in enumerate(names)}
    seen = set(seen_ids)
    margins = []
    for i in seen_ids:
        parts = names[i].split()
        if len(parts) != 2 or parts[0] == colour or parts[1] == shape:
            continue
        trio = (by_name.get(f"{colour} {parts[1]}"), by_name.get(f"{parts[0]} {shape}"), i)
        if not all(t in seen for t in trio):
            continue
        a = text[trio[0]] + text[trio[1]] - text[trio[2]]
        sims = text @ (a / np.linalg.norm(a))
        margins.append(float(sims[target] - np.delete(sims, target).max()))
    if not margins:
        raise ValueError(f"class {names[target]!r}: no seen trio spells it by analogy")
    return float(np.mean(margins))


def main(argv: list[str]) -> int:
    from c2s.config import load_config
    from c2s.data.catalog import get_dataset_info
    from c2s.inputs import resolve_inputs
    from c2s.train.resolve import text_embeddings_for

    config, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else ("toy_c2s", argv)
    cfg = load_config(config, overrides)
    _, every = text_embeddings_for(cfg, resolve_inputs(cfg))
    text = F.normalize(every.float(), dim=-1).numpy()
    info = get_dataset_info(str(cfg.data.dataset))
    names = list(info.classes)
    objects = [c for c in range(len(names)) if names[c] != "background"]
    seen = [c for c in objects if c in set(info.seen_ids)]
    unseen = [c for c in objects if c in set(info.unseen_ids)]
    predicted = compositional_fit(text, names, seen, unseen)
    rows = []
    for c in unseen:
        guess = torch.nn.functional.normalize(torch.from_numpy(predicted[c]), dim=0).numpy()
        rows.append({"class": names[c], "cos_prediction_to_text": float(guess @ text[c]),
                     "max_cos_to_a_seen_text": float(max(text[c] @ text[s] for s in seen)),
                     "analogy_margin": analogy_margin(text, names, seen, c)})
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}))
    # the same fit, leaving each seen class out in turn: how well it predicts classes it did see
    held = []
    for c in seen:
        rest = [s for s in seen if s != c]
        try:
            guess = compositional_fit(text, names, rest, [c])[c]
        except ValueError:
            continue
        held.append(float(F.normalize(torch.from_numpy(guess), dim=0).numpy() @ text[c]))
    print(json.dumps({"summary": True, "config": config, "unseen": len(rows),
                      "mean_cos_prediction_to_text": round(float(np.mean([r["cos_prediction_to_text"] for r in rows])), 4),
                      "mean_max_cos_to_a_seen_text": round(float(np.mean([r["max_cos_to_a_seen_text"] for r in rows])), 4),
                      "mean_analogy_margin": round(float(np.mean([r["analogy_margin"] for r in rows])), 4),
                      "seen_left_out_mean_cos": round(float(np.mean(held)), 4) if held else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
