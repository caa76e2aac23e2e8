"""Latent class mining (Sec. 3.1, Eq. 1): cluster CLIP's dense tokens in the unannotated area.

1. Labels are area-down-sampled to the token grid; a token is *unannotated* when at least
   ``mining.token_unlabeled_frac`` of its pixels are ignore. Seen tokens are zeroed (Eq. 1).
2. Seeds: the mean of every o x o window (o in ``mining.window_sizes``, stride max(1, o // 2), the last
   window flush with the border as in Eq. 1), kept when at least ``mining.seed_min_unlabeled`` of the window
   is unannotated. Seeds closer than ``mining.merge_threshold`` to a seed from a larger (smoother) window are
   duplicates and dropped (they would be merged anyway; hundreds of noisy copies would over-segment
   K-Means); at most ``mining.max_seeds`` remain (a random subset drawn with ``mining.seed``).
3. Cosine K-Means on the unannotated tokens, initialised from the seeds (``mining.kmeans_iters``); empty
   clusters are dropped.
4. Merging: repeatedly merge the two clusters whose centres are most similar while that cosine similarity
   exceeds ``mining.merge_threshold`` (the merged centre is the normalised sum of both clusters' members, so
   a merge never chains through stale centres); then every token is re-assigned to its nearest centre.
5. Clusters with fewer than ``mining.min_region`` tokens are dropped; the ``mining.k_max`` largest are kept
   as latent classes j = 0.. in order of size, up-sampled to the label size (bilinear one-hot, argmax), where
   ``mining.edges`` says what ends a region: the next mostly annotated token (``"tokens"``) or the pixel labels
   (``"labels"``; :func:`upsample_regions`).

The pseudo mask keeps every seen label, gives latent pixels ``num_seen + j`` and leaves the rest ignore.
A latent id is only ever written on a pixel whose seen label is ignore. Deterministic for fixed inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _window_starts(size: int, o: int, stride: int) -> list[int]:
    starts = list(range(0, size - o + 1, stride))
    if starts[-1] != size - o:  # Eq. 1 runs i up to H_d - o: keep the window flush with the border
        starts.append(size - o)
    return starts


def window_seeds(tokens: torch.Tensor, unlabeled: torch.Tensor, window_sizes: Any,
                 min_unlabeled: float) -> torch.Tensor:
    """Sliding-window seeds of Eq. 1.

    tokens: (D, h, w) with seen positions already zeroed; unlabeled: (h, w) bool.
    Returns (S, D) L2-normalised seeds, largest windows first, then row-major. Vectorised through
    integral images: every window sum is four lookups.
    """
    d, h, w = tokens.shape
    integral = F.pad(tokens.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (D, h+1, w+1)
    count = F.pad(unlabeled.float().cumsum(0).cumsum(1), (1, 0, 1, 0))  # (h+1, w+1)
    means, keeps = [], []
    for o in sorted((int(o) for o in window_sizes), reverse=True):
        if o < 1 or o > min(h, w):
            continue
        stride = max(1, o // 2)
        ii = torch.tensor(_window_starts(h, o, stride), device=tokens.device)
        jj = torch.tensor(_window_starts(w, o, stride), device=tokens.device)
        i, j = torch.meshgrid(ii, jj, indexing="ij")
        i, j = i.reshape(-1), j.reshape(-1)

        def box(t: torch.Tensor, i: torch.Tensor = i, j: torch.Tensor = j, o: int = o) -> torch.Tensor:
            return t[..., i + o, j + o] - t[..., i, j + o] - t[..., i + o, j] + t[..., i, j]

        means.append((box(integral) / (o * o)).T)
        keeps.append(box(count) / (o * o) >= min_unlabeled)
    if not means:
        return tokens.new_zeros(0, d)
    out = torch.cat(means)
    # one selection for all window sizes (on a GPU each boolean selection waits for the device)
    out = out[torch.cat(keeps) & (out.norm(dim=1) > 1e-8)]
    return F.normalize(out, dim=1)


def dedupe_seeds(seeds: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy de-duplication, NMS-style: (S, D) -> (S', D), keeping a seed only if its cosine similarity
    to every seed kept before it is <= threshold. Seeds come largest window first, so each class is
    represented by its smoothest seed and K-Means does not start from hundreds of near-copies.

    The greedy pass is sequential: it runs on the host over the (S, S) similarities, copied once (on a GPU,
    a loop over device values waits for the device at every seed)."""
    over = (seeds @ seeds.T > threshold).cpu().numpy()
    suppressed = np.zeros(len(seeds), dtype=bool)
    keep = []
    for i in range(len(seeds)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return seeds[torch.as_tensor(keep, dtype=torch.long, device=seeds.device)]


def cosine_kmeans(points: torch.Tensor, centres: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical K-Means. points (N, D) and centres (K, D), both L2-normalised.

    Returns (centres (K', D), sums (K', D)) with empty clusters dropped; sums are the unnormalised sums
    of each cluster's members (used for merging). A cluster that empties leaves the argmax from then on
    (masked, so the shapes stay fixed and the survivors keep their order); the loop stops once an
    iteration changes no assignment: one read back from the device per iteration.
    """
    alive = torch.ones(len(centres), dtype=torch.bool, device=centres.device)
    prev: torch.Tensor | None = None
    sums = centres
    for _ in range(max(1, int(iters))):
        assign = (points @ centres.T).masked_fill(~alive, -float("inf")).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        nonempty = torch.zeros_like(alive).index_fill_(0, assign, True)
        # unchanged assignments: the same clusters are non-empty, the centres are a fixed point
        done = prev is not None and bool((assign == prev).all())
        alive = nonempty
        centres = F.normalize(sums, dim=1)
        prev = assign
        if done:
            break
    return centres[alive], sums[alive]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised as F.normalize does (norm clamped at 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def merge_clusters(sums: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy centroid merging: (K, D) member sums -> (K', D) merged centres, L2-normalised.

    Merges the most similar pair while its cosine similarity > threshold; ties go to the first pair in
    row-major order, so the result is deterministic. Sequential and small (K <= mining.max_seeds): it runs
    on the host in numpy (fp32), the sums copied there once and the merged centres back (on a GPU, every
    step of the loop would otherwise wait for the device).
    """
    sums_np = sums.detach().float().cpu().numpy().copy()
    alive = np.ones(len(sums_np), dtype=bool)
    centres = _unit_rows(sums_np)
    sim = centres @ centres.T
    np.fill_diagonal(sim, -np.inf)
    while alive.sum() > 1:
        a, b = divmod(int(sim.argmax()), sim.shape[1])
        if not sim[a, b] > threshold:
            break
        a, b = min(a, b), max(a, b)
        sums_np[a] += sums_np[b]
        alive[b] = False
        sim[b, :] = -np.inf
        sim[:, b] = -np.inf
        centres[a] = _unit_rows(sums_np[a])
        row = centres @ centres[a]
        row[~alive] = -np.inf
        row[a] = -np.inf
        sim[a, :] = row
        sim[:, a] = row
    return torch.from_numpy(_unit_rows(sums_np[alive])).to(sums.device)


EDGES = ("labels", "tokens")  # mining.edges


def check_edges(value: Any) -> str:
    """``mining.edges``, checked (the driver calls this before Ray starts)."""
    if value not in EDGES:
        raise ValueError(f"mining.edges = {value!r}: expected one of {', '.join(EDGES)}")
    return str(value)


def mining_edges(mining_cfg: Mapping[str, Any]) -> str:
    """``mining.edges`` of a mining section; a run's config.json written before the key existed was mined
    with ``"tokens"``, so resuming it keeps that."""
    return check_edges(mining_cfg.get("edges", "tokens"))


def upsample_regions(grid: torch.Tensor, k: int, size: tuple[int, int], edges: str) -> torch.Tensor:
    """Token-grid regions to pixels: (H, W) long, 0 where no latent class reaches, else 1 + j.

    grid: (h, w) latent rank j of each token in a kept region, -1 elsewhere (annotated tokens and dropped
    clusters). Bilinear up-sampling of a one-hot map gives boundaries between token centres instead of
    nearest-neighbour blocks. ``edges`` says what ends a latent region:

    - ``"tokens"``: every other token votes "no latent class" (channel 0), so an unannotated object ends
      half-way to the next mostly annotated token, and its own pixels beyond that line stay ignore. On the
      toy world's 8 x 8 grid 21.3-23.7% of the unseen objects' pixels were in no latent region (1.5-6.2%
      with ``"labels"``), and a circle's outline became a square's
      (docs/decisions.md#latent-regions-end-where-the-labels-do).
    - ``"labels"``: only kept regions hold a channel; a pixel takes the strongest one among its four nearest
      token centres, and the caller keeps it only where the pixel's own label is ignore. So a latent region
      ends where the annotation does, or one token away from its last token.
    """
    check_edges(edges)
    onehot = F.one_hot(grid + 1, num_classes=k + 1).permute(2, 0, 1).float()[None]
    if edges == "tokens":
        return F.interpolate(onehot, size=size, mode="bilinear", align_corners=False)[0].argmax(dim=0)
    up = F.interpolate(onehot[:, 1:], size=size, mode="bilinear", align_corners=False)[0]
    return torch.where(up.amax(dim=0) > 0, up.argmax(dim=0) + 1, 0)


def mine_latent_classes(dense: torch.Tensor | np.ndarray, seen_label: torch.Tensor | np.ndarray, num_seen: int,
                        mining_cfg: Mapping[str, Any], ignore_index: int = 255) -> torch.Tensor:
    """Pseudo mask Y_p for one image.

    dense: (D, h, w) dense CLIP tokens; seen_label: (H, W) int, seen-index labels with ``ignore_index``.
    Returns (H, W) int64 on dense's device: seen labels kept, latent regions ``num_seen + j`` (j < k_max,
    largest first), the rest ``ignore_index``.
    """
    dense = torch.as_tensor(dense)
    label = torch.as_tensor(seen_label).to(dense.device, torch.long)
    if dense.ndim != 3:
        raise ValueError(f"dense: expected (D, h, w), got shape {tuple(dense.shape)}")
    if label.ndim != 2:
        raise ValueError(f"seen_label: expected (H, W), got shape {tuple(label.shape)}")
    k_max = int(mining_cfg["k_max"])
    if ignore_index >= num_seen and num_seen + k_max > ignore_index:
        raise ValueError(f"mining.k_max={k_max}: latent ids num_seen + j up to {num_seen + k_max - 1} would "
                         f"reach ignore_index={ignore_index}")
    pseudo = label.clone()
    if k_max <= 0:
        return pseudo
    d, h, w = dense.shape
    ignore_pix = label == ignore_index
    frac = F.adaptive_avg_pool2d(ignore_pix.float()[None, None], (h, w))[0, 0]
    unlabeled = (frac >= float(mining_cfg["token_unlabeled_frac"])) & (frac > 0)
    if not bool(unlabeled.any()):
        return pseudo  # nothing unannotated: no latent classes

    x = F.normalize(dense.float(), dim=0)
    zeroed = x * unlabeled  # Eq. 1: seen positions contribute zero to the window means
    seeds = window_seeds(zeroed, unlabeled, mining_cfg["window_sizes"], float(mining_cfg["seed_min_unlabeled"]))
    if len(seeds) == 0:
        return pseudo
    seeds = dedupe_seeds(seeds, float(mining_cfg["merge_threshold"]))
    max_seeds = int(mining_cfg["max_seeds"])
    if len(seeds) > max_seeds > 0:
        gen = torch.Generator().manual_seed(int(mining_cfg["seed"]))
        pick = torch.randperm(len(seeds), generator=gen)[:max_seeds].sort().values
        seeds = seeds[pick.to(seeds.device)]

    points = x[:, unlabeled].T  # (N, D) unannotated tokens, row-major
    _, sums = cosine_kmeans(points, seeds, int(mining_cfg["kmeans_iters"]))
    centres = merge_clusters(sums, float(mining_cfg["merge_threshold"]))
    assign = (points @ centres.T).argmax(dim=1)
    sizes = torch.bincount(assign, minlength=len(centres))
    # Largest first; stable sort keeps equal sizes in centre order (deterministic).
    order = torch.sort(-sizes, stable=True).indices
    order = order[sizes[order] >= int(mining_cfg["min_region"])][:k_max]
    if len(order) == 0:
        return pseudo
    rank = torch.full((len(centres),), -1, dtype=torch.long, device=dense.device)
    rank[order] = torch.arange(len(order), device=dense.device)
    grid = torch.full((h, w), -1, dtype=torch.long, device=dense.device)
    grid[unlabeled] = rank[assign]
    up = upsample_regions(grid, len(order), tuple(label.shape), mining_edges(mining_cfg))
    return torch.where(ignore_pix & (up > 0), num_seen + up - 1, pseudo)
