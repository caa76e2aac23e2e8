"""The toy world's caches outlive code moves: the cache-key functions give the keys they gave before the
toy world moved into c2s/world (recorded at commit bfdd616 from the same configs), so a cache made by an
older c2s is found, not made again."""

from __future__ import annotations

from pathlib import Path

import pytest

from c2s.config import load_config
from c2s.teacher.cache import cache_key
from c2s.world.backbone import backbone_dir
from c2s.world.clip import teacher_dir
from c2s.world.generate import world_key

# config, overrides -> (world key, toy CLIP key, toy backbone key, token cache key), all measured at bfdd616
BEFORE = {
    ("toy_c2s", ()): ("f687859756077392", "9d79354e4dc5e0e7", "26b2eed1980e5201", "7feec607d20a5f09ba58"),
    ("toy_tiny", ()): ("67546ca566160729", "83ab8dd9eee427a1", "9473a11f266111fa", "bfde7ec6e02aa108adda"),
    ("toy_c2s", ("toy_clip.background_frac=0.25",)): ("f687859756077392", "774f5efac1d2d8c8", "26b2eed1980e5201",
                                                      None),
}


@pytest.mark.parametrize(("name", "overrides"), list(BEFORE))
def test_cache_keys_are_the_ones_before_the_move(name, overrides):
    world, clip, backbone, tokens = BEFORE[(name, overrides)]
    cfg = load_config(name, list(overrides))
    assert world_key(cfg.data.get("world")) == world
    assert teacher_dir(cfg, Path("/C")) == Path("/C/toy_clip") / clip
    assert backbone_dir(cfg, Path("/C")) == Path("/C/toy_backbone") / backbone
    if tokens is not None:
        # The token cache hashes the resolved config: the world's folder stands where the provider puts it.
        cfg.data.root, cfg.teacher.checkpoint = "/C/toyworld/x", None
        assert cache_key(cfg, "/C/toyworld/x") == tokens


def test_mining_edges_labels_gets_a_token_cache_of_its_own():
    """``mining.edges`` came later: ``"tokens"`` (what every older cache holds) keeps the key above, ``"labels"``
    mines other pseudo masks and so other tokens."""
    keys = {}
    for edges in ("tokens", "labels"):
        cfg = load_config("toy_c2s", [f"mining.edges={edges}"])
        cfg.data.root, cfg.teacher.checkpoint = "/C/toyworld/x", None
        keys[edges] = cache_key(cfg, "/C/toyworld/x")
    assert keys["tokens"] == BEFORE[("toy_c2s", ())][3]
    assert keys["labels"] != keys["tokens"]
