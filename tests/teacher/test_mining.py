"""Latent class mining (Eq. 1): seeds, planted clusters recovered, seen pixels untouched, deterministic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2s.config import load_config
from c2s.teacher.mining import mine_latent_classes, window_seeds

NUM_SEEN = 10
SEEN_ID = 5


@pytest.fixture(scope="module")
def mining_cfg():
    return load_config("toy_c2s").mining


def planted(noise=0.05, seed=1, d=64, h=16, w=16, px=8):
    """Token grid (h, w): columns 0-3 seen, then three latent classes (two stacked blocks and a strip)."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(4, d, generator=g), dim=1)
    region = torch.zeros(h, w, dtype=torch.long)
    region[:, :4] = 3
    region[:8, 4:10] = 0
    region[8:, 4:10] = 1
    region[:, 10:] = 2
    dense = F.normalize(protos[region].permute(2, 0, 1) + noise * torch.randn(d, h, w, generator=g), dim=0)
    pix = region.repeat_interleave(px, 0).repeat_interleave(px, 1)
    label = torch.full(pix.shape, 255, dtype=torch.long)
    label[pix == 3] = SEEN_ID
    return dense, label, pix


def best_iou(pseudo, gt):
    return max(float(((pseudo == k) & gt).sum() / ((pseudo == k) | gt).sum()) for k in torch.unique(pseudo))


def test_window_seed_counts_follow_eq1():
    # 8x8 grid, all unannotated: o=2 stride 1 -> 7x7, o=4 stride 2 -> 3x3, o=8 -> 1 window.
    tokens = F.normalize(torch.randn(16, 8, 8), dim=0)
    assert len(window_seeds(tokens, torch.ones(8, 8, dtype=torch.bool), (2, 4, 8), 0.5)) == 49 + 9 + 1
    # 9x9, o=4 stride 2: starts 0, 2, 4 plus the border-flush 5 -> 4 x 4 windows; o=16 does not fit.
    tokens = F.normalize(torch.randn(16, 9, 9), dim=0)
    assert len(window_seeds(tokens, torch.ones(9, 9, dtype=torch.bool), (4, 16), 0.5)) == 16
    # A window seeds only if >= half its tokens are unannotated: left 3 columns of 8 unannotated, o=2
    # windows at columns 0-1 and 1-2 fully, 2-3 half -> 3 column starts x 7 row starts.
    unl = torch.zeros(8, 8, dtype=torch.bool)
    unl[:, :3] = True
    assert len(window_seeds(tokens[:, :8, :8] * unl, unl, (2,), 0.5)) == 21
    # The seed is the window mean: one window covering everything = the normalised mean token.
    one = window_seeds(tokens[:, :8, :8], torch.ones(8, 8, dtype=torch.bool), (8,), 0.5)
    assert torch.allclose(one[0], F.normalize(tokens[:, :8, :8].mean(dim=(1, 2)), dim=0), atol=1e-6)


def test_recovers_planted_clusters(mining_cfg):
    dense, label, pix = planted()
    pseudo = mine_latent_classes(dense, label, NUM_SEEN, mining_cfg)
    assert pseudo.shape == label.shape and pseudo.dtype == torch.int64
    latent_ids = sorted(int(v) for v in torch.unique(pseudo) if NUM_SEEN <= v < 255)
    assert len(latent_ids) == 3
    assert latent_ids == [NUM_SEEN, NUM_SEEN + 1, NUM_SEEN + 2]
    for c in range(3):
        assert best_iou(pseudo, pix == c) >= 0.9
    # Seen pixels keep their label; no seen position is ever latent.
    assert torch.equal(pseudo[label != 255], label[label != 255])
    assert int(((pseudo >= NUM_SEEN) & (label != 255)).sum()) == 0
    # Largest first: class 2 (16 x 6 tokens) > classes 0, 1 (8 x 6 each).
    assert best_iou(pseudo == NUM_SEEN, pix == 2) >= 0.9


def test_deterministic_for_fixed_seed(mining_cfg):
    dense = F.normalize(torch.randn(32, 16, 16, generator=torch.Generator().manual_seed(0)), dim=0)
    label = torch.full((64, 64), 255, dtype=torch.long)
    label[:20] = 3
    cfg = {**mining_cfg, "max_seeds": 32, "merge_threshold": 0.99}  # subsampling active
    a = mine_latent_classes(dense, label, NUM_SEEN, cfg)
    b = mine_latent_classes(dense, label, NUM_SEEN, cfg)
    assert torch.equal(a, b)
    assert int((a >= NUM_SEEN).sum()) > 0
    assert set(torch.unique(a).tolist()) <= {3, 255} | set(range(NUM_SEEN, NUM_SEEN + cfg["k_max"]))


def test_no_unannotated_area_no_latent(mining_cfg):
    dense, _, _ = planted()
    label = torch.full((128, 128), 2, dtype=torch.long)
    assert torch.equal(mine_latent_classes(dense, label, NUM_SEEN, mining_cfg), label)


def test_k_max_and_min_region(mining_cfg):
    dense, label, pix = planted()
    one = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "k_max": 1})
    assert sorted(int(v) for v in torch.unique(one)) == [SEEN_ID, NUM_SEEN, 255]
    assert best_iou(one, pix == 2) >= 0.9  # the largest survives
    # min_region above every cluster's size (96 tokens max) -> nothing latent.
    none = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "min_region": 97})
    assert torch.equal(none, label)
    with pytest.raises(ValueError, match="k_max"):
        mine_latent_classes(dense, label, 250, mining_cfg)


# ---- the steps that read back from the device, against their literal sequential form -------------------------
# The references are the step-by-step forms c2s used before (each step read a value off the device: ~420 reads per
# image at ViT-B/16's 28x28 grid, 8.4 ms per image on an H200). The current ones run the greedy loops on the host
# and keep K-Means' shapes fixed; they must decide exactly the same.
def dedupe_reference(seeds, threshold):
    sim = seeds @ seeds.T
    suppressed = torch.zeros(len(seeds), dtype=torch.bool)
    keep = []
    for i in range(len(seeds)):
        if bool(suppressed[i]):
            continue
        keep.append(i)
        suppressed |= sim[i] > threshold
    return seeds[keep]


def kmeans_reference(points, centres, iters):
    prev, sums = None, centres
    for _ in range(max(1, int(iters))):
        assign = (points @ centres.T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        nonempty = torch.bincount(assign, minlength=len(centres)) > 0
        converged = prev is not None and bool(nonempty.all()) and torch.equal(assign, prev)
        centres, sums = F.normalize(sums[nonempty], dim=1), sums[nonempty]
        prev = assign if bool(nonempty.all()) else None
        if converged:
            break
    return centres, sums


def merge_reference(sums, threshold):
    sums = sums.clone()
    alive = torch.ones(len(sums), dtype=torch.bool)
    centres = F.normalize(sums, dim=1)
    sim = centres @ centres.T
    sim.fill_diagonal_(-float("inf"))
    while int(alive.sum()) > 1:
        a, b = divmod(int(sim.argmax()), sim.shape[1])
        if not float(sim[a, b]) > threshold:
            break
        a, b = min(a, b), max(a, b)
        sums[a] += sums[b]
        alive[b] = False
        sim[b, :] = -float("inf")
        sim[:, b] = -float("inf")
        centres[a] = F.normalize(sums[a], dim=0)
        row = centres @ centres[a]
        row[~alive] = -float("inf")
        row[a] = -float("inf")
        sim[a, :] = row
        sim[:, a] = row
    return F.normalize(sums[alive], dim=1)


def clustered(n, d, k, noise, seed):
    """n unit points around k random unit centres, and the points' cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, d, generator=g), dim=1)
    which = torch.randint(k, (n,), generator=g)
    return F.normalize(centres[which] + noise * torch.randn(n, d, generator=g), dim=1), which


@pytest.mark.parametrize("seed", range(6))
def test_dedupe_kmeans_merge_decide_as_their_sequential_forms(seed):
    from c2s.teacher.mining import cosine_kmeans, dedupe_seeds, merge_clusters

    points, _ = clustered(300, 24, 5, noise=0.3 + 0.1 * seed, seed=seed)
    seeds = points[torch.randperm(300, generator=torch.Generator().manual_seed(seed))[:60]]
    for threshold in (0.5, 0.8, 0.95):
        assert torch.equal(dedupe_seeds(seeds, threshold), dedupe_reference(seeds, threshold))
    # duplicated seeds (a tie goes to the first copy) and one opposite to every point empty at once; others
    # empty along the way: the masked form must drop exactly those, in order
    start = torch.cat([seeds, seeds[::7], -points.mean(0, keepdim=True) / points.mean(0).norm()])
    for iters in (1, 2, 3, 20):
        got, want = cosine_kmeans(points, start, iters), kmeans_reference(points, start, iters)
        assert len(want[0]) < len(start) and got[0].shape == want[0].shape, iters
        assert torch.allclose(got[0], want[0], atol=1e-6) and torch.allclose(got[1], want[1], atol=1e-5)
    sums = kmeans_reference(points, start, 20)[1]
    for threshold in (0.3, 0.7, 0.9, 0.99):
        got, want = merge_clusters(sums, threshold), merge_reference(sums, threshold)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6), threshold


def test_kmeans_keeps_an_emptied_cluster_out():
    """2-D, by hand: seeds at 60, 300 and 0 degrees; points near 60 and 300 degrees and one at 180. The 0-degree
    seed wins no point and empties in the first iteration. In the second, the 180-degree point has a negative
    cosine with both surviving centres: an emptied cluster's zero centre (cosine 0) would win it back; it must
    stay out. Two clusters, as the sequential form."""
    from c2s.teacher.mining import cosine_kmeans

    def at(*degrees):
        rad = torch.tensor(degrees, dtype=torch.float32) * torch.pi / 180
        return torch.stack([rad.cos(), rad.sin()], dim=1)

    points, seeds = at(60, 50, 300, 310, 180), at(60, 300, 0)
    centres, sums = cosine_kmeans(points, seeds, 10)
    ref_centres, ref_sums = kmeans_reference(points, seeds, 10)
    assert len(centres) == 2 and torch.allclose(centres, ref_centres, atol=1e-6)
    assert torch.allclose(sums[0], points[[0, 1, 4]].sum(0), atol=1e-6)  # the 180-degree point joined the first


def test_mining_reads_back_from_the_device_a_bounded_number_of_times(mining_cfg):
    """On ViT-B/16's grid (28 x 28 tokens, D = 512, every window size, max_seeds 256): the reads the device
    must answer (host syncs on a GPU: c2s.bench.dispatch.DispatchCounter) stay at a few plus one per K-Means
    iteration, not one per seed and merge step, while finding the planted regions."""
    from c2s.bench.dispatch import DispatchCounter

    dense, label, pix = planted(noise=0.01, d=512, h=28, w=28, px=4)
    counter = DispatchCounter()
    with counter:
        pseudo = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "max_seeds": 256})
    assert len(counter.syncs) <= 12 + int(mining_cfg["kmeans_iters"]), counter.syncs
    assert sorted(int(v) for v in torch.unique(pseudo) if NUM_SEEN <= v < 255) == [NUM_SEEN, NUM_SEEN + 1,
                                                                                   NUM_SEEN + 2]


def disc_world(d=32, grid=8, px=12, seed=3):
    """A 96-px image of seen background with an unannotated disc (radius 16 px, centre (48, 48)) and a small
    unannotated square of 2 x 2 pixels at (6, 88): tokens at least half ignore carry one vector, the rest
    another (a teacher that sees the disc perfectly; the square's token stays an annotated one)."""
    g = torch.Generator().manual_seed(seed)
    size = grid * px
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 <= 16 ** 2
    label = torch.full((size, size), SEEN_ID, dtype=torch.long)
    label[disc] = 255
    label[6:8, 88:90] = 255
    frac = F.adaptive_avg_pool2d((label == 255).float()[None, None], (grid, grid))[0, 0]
    protos = F.normalize(torch.randn(2, d, generator=g), dim=1)
    dense = protos[(frac >= 0.5).long()].permute(2, 0, 1)
    return F.normalize(dense + 0.01 * torch.randn(d, grid, grid, generator=g), dim=0), label, disc


def test_latent_region_ends_where_the_labels_do(mining_cfg):
    """The toy world's yellow circle read as a square (docs/decisions.md#latent-regions-end-where-the-labels-do):
    with ``mining.edges=tokens`` each token that is mostly seen background votes "no latent class", cutting the
    disc's rim; with ``labels`` the whole disc is one latent region and it ends exactly at the annotation."""
    dense, label, disc = disc_world()
    latent = {}
    for edges in ("tokens", "labels"):
        pseudo = mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "edges": edges})
        assert torch.equal(pseudo[label != 255], label[label != 255])  # seen pixels untouched
        assert sorted(int(v) for v in torch.unique(pseudo)) == [SEEN_ID, NUM_SEEN, 255]
        latent[edges] = pseudo == NUM_SEEN
        assert not bool((latent[edges] & ~disc).any())  # never outside the unannotated disc
        assert int(pseudo[6:8, 88:90].ne(255).sum()) == 0  # out of reach of every latent token: ignore
    assert bool(latent["labels"].eq(disc).all())
    # By hand, "tokens": the disc covers 4 tokens at least half (rows and columns 3-4, centres at 42 and 54 px);
    # the next centres (30, 66) are annotated, so the region ends half-way, at 36 and 60, in a square with its
    # corners rounded off (there three annotated neighbours outweigh one latent): 64% of the disc
    square = torch.zeros_like(disc)
    square[36:60, 36:60] = True
    assert not bool((latent["tokens"] & ~square).any()) and bool(latent["tokens"][36:60, 48].all())
    assert 0.6 < float(latent["tokens"][disc].float().mean()) < 0.7


def test_dropped_cluster_joins_a_neighbour_only_within_one_token(mining_cfg):
    """Under ``labels`` a kept region's channel reaches one token spacing; an unannotated token whose cluster is
    dropped (min_region) keeps its own pixels ignore beyond that reach."""
    from c2s.teacher.mining import upsample_regions

    grid = torch.full((4, 8), -1, dtype=torch.long)
    grid[:, :2] = 0  # a kept region in the two left columns; columns 2-7: annotated or dropped
    up = upsample_regions(grid, 1, (8, 16), "labels")  # 2 px per token
    # token column j's centre sits at pixel 2j + 0.5: column 1's (2.5) reaches pixels 3 and 4, short of column 2's (4.5)
    assert up[:, :5].eq(1).all() and up[:, 5:].eq(0).all()
    tokens = upsample_regions(grid, 1, (8, 16), "tokens")
    assert tokens[:, :4].eq(1).all() and tokens[:, 4:].eq(0).all()  # half-way between centres


def test_mining_edges_is_checked(mining_cfg, tmp_path):
    dense, label, _ = disc_world()
    with pytest.raises(ValueError, match=r"mining.edges = 'pixels': expected one of labels, tokens"):
        mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "edges": "pixels"})
    # a config.json written before the key existed was mined with "tokens"
    old = {k: v for k, v in mining_cfg.items() if k != "edges"}
    assert torch.equal(mine_latent_classes(dense, label, NUM_SEEN, old),
                       mine_latent_classes(dense, label, NUM_SEEN, {**mining_cfg, "edges": "tokens"}))
    from c2s.config import ConfigError
    from c2s.train.trainer import check_mining

    with pytest.raises(ConfigError, match="mining.edges = 'pixels'"):
        check_mining(load_config("toy_c2s", ["mining.edges=pixels"]))
