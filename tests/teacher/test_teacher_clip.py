"""The open_clip teacher: loading errors, token shapes, dense variants, batched local tokens, text cache."""

from __future__ import annotations

import socket

import pytest
import torch

from c2s.teacher.clip import load_teacher
from c2s.teacher.text import text_embeddings

CFG = dict(arch="c2s-test-vit", checkpoint=None, allow_random=True, image_size=32, dense_size=48,
           dense_variant="maskclip", local_margin=0.1, precision="auto", seed=0)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(CFG, device="cpu")


def _images(b=2, h=40, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=g)


def test_loaded_frozen_and_deterministic(teacher):
    assert teacher.embed_dim == 64 and teacher.patch == 8 and teacher.image_size == 32
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert teacher.dtype == torch.float32  # fp32 on CPU
    again = load_teacher(CFG, device="cpu")  # teacher.seed: every actor builds the same random teacher
    assert again.weights_hash == teacher.weights_hash


def _open_clip_reference(teacher, images: torch.Tensor, resample) -> torch.Tensor:
    """CLS embeddings computed without the teacher's preprocessing: PIL resize (per channel in float, so no
    uint8 rounding) to the trained size, then open_clip's own eval transform (ToTensor + Normalize with
    OPENAI_DATASET_MEAN/STD, open_clip/transform.py image_transform) and ``model.encode_image``."""
    import numpy as np
    import open_clip
    from PIL import Image

    side = teacher.image_size
    preprocess = open_clip.image_transform(side, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                           std=open_clip.OPENAI_DATASET_STD)
    to_tensor_normalise = preprocess.transforms[-2:]  # MaybeToTensor, Normalize (resize/crop are identities here)
    batch = []
    for image in images.numpy():
        if image.shape[:2] == (side, side):
            x = preprocess(Image.fromarray(image))  # the full open_clip transform at the trained size
        else:
            planes = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F").resize((side, side), resample))
                      for c in range(3)]
            x = torch.from_numpy(np.stack(planes)) / 255.0
            x = to_tensor_normalise[1](x)
        batch.append(x)
    with torch.inference_mode():
        return teacher.model.encode_image(torch.stack(batch), normalize=True)


def test_global_matches_open_clip_at_trained_size(teacher):
    from PIL import Image

    images = _images(h=32, w=32)
    g = teacher.encode_global(images)
    assert g.shape == (2, 64) and g.dtype == torch.float32
    assert torch.allclose(g.norm(dim=1), torch.ones(2), atol=1e-5)
    assert (g - _open_clip_reference(teacher, images, Image.BILINEAR)).abs().max() < 1e-5
    # the normalisation constants are OpenAI CLIP's, as open_clip/constants.py (mlfoundations/open_clip) writes
    # them: OPENAI_DATASET_MEAN / OPENAI_DATASET_STD
    assert teacher._mean.flatten().tolist() == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert teacher._std.flatten().tolist() == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    # Another size: the whole image resized (bilinear, antialiased like PIL's), no centre crop.
    larger = _images(h=56, w=56)
    assert (teacher.encode_global(larger) - _open_clip_reference(teacher, larger, Image.BILINEAR)).abs().max() < 1e-5


@pytest.mark.parametrize("variant", ["maskclip", "clearclip", "sclip"])
@pytest.mark.parametrize("dense_size", [32, 48, 64])
def test_dense_grid_shape_and_norm(variant, dense_size):
    t = load_teacher({**CFG, "dense_variant": variant, "dense_size": dense_size}, device="cpu")
    d = t.encode_dense(_images(h=37, w=51))
    side = dense_size // 8  # patch 8: grid = dense_size / 8, positional embedding interpolated from 4x4
    assert t.grid() == (side, side)
    assert d.shape == (2, 64, side, side)
    assert torch.allclose(d.norm(dim=1), torch.ones(2, side, side), atol=1e-5)


def test_maskclip_is_the_value_path(teacher):
    """MaskCLIP: dense token = proj(ln_post(out_proj(v(ln_1 x)))) of the last block's patch input."""
    images = _images(b=1)
    x = teacher._resize(teacher._normalise(images), 48)
    with torch.inference_mode():
        tokens, h, w = teacher._tokens_before_last(x)
        blk = teacher.visual.transformer.resblocks[-1]
        v = torch.nn.functional.linear(blk.ln_1(tokens), blk.attn.in_proj_weight, blk.attn.in_proj_bias)[..., 128:]
        ref = teacher.visual.ln_post(blk.attn.out_proj(v))[:, 1:] @ teacher.visual.proj
        ref = torch.nn.functional.normalize(ref, dim=-1).transpose(1, 2).reshape(1, 64, h, w)
    assert (teacher.encode_dense(images) - ref).abs().max() < 1e-5


def _dense_reference(t, images: torch.Tensor, variant: str) -> torch.Tensor:
    """The last block's dense tokens re-implemented from the papers' definitions with torch's own attention
    (F.scaled_dot_product_attention), not c2s's einsum code. ClearCLIP (Lan et al. 2024): query-query
    attention, residual and FFN of the last block dropped. SCLIP (Wang et al. 2024, correlative
    self-attention): softmax(q q^T) + softmax(k k^T) applied to v, residual and FFN dropped. As in c2s, only
    the patch tokens take part (c2s/teacher/clip.py ``_last_block_dense``: the CLS token plays no role)."""
    x = t._resize(t._normalise(images), t.dense_size)
    with torch.inference_mode():
        tokens, h, w = t._tokens_before_last(x)
        blk = t.visual.transformer.resblocks[-1]
        heads = blk.attn.num_heads
        y = blk.ln_1(tokens)[:, 1:]
        b, n, c = y.shape
        q, k, v = (part.reshape(b, n, heads, c // heads).transpose(1, 2)
                   for part in torch.nn.functional.linear(y, blk.attn.in_proj_weight, blk.attn.in_proj_bias).split(c, -1))
        sdpa = torch.nn.functional.scaled_dot_product_attention
        out = sdpa(q, q, v) if variant == "clearclip" else sdpa(q, q, v) + sdpa(k, k, v)
        out = blk.attn.out_proj(out.transpose(1, 2).reshape(b, n, c))
        ref = torch.nn.functional.normalize(t.visual.ln_post(out) @ t.visual.proj, dim=-1)
    return ref.transpose(1, 2).reshape(b, -1, h, w)


def test_dense_variants_match_their_definitions_and_differ():
    images = _images(h=37, w=51)
    dense = {v: load_teacher({**CFG, "dense_variant": v}, device="cpu").encode_dense(images)
             for v in ("maskclip", "clearclip", "sclip")}
    for variant in ("clearclip", "sclip"):
        t = load_teacher({**CFG, "dense_variant": variant}, device="cpu")
        assert (dense[variant] - _dense_reference(t, images, variant)).abs().max() < 1e-5, variant
    # the three are different maps (cosine between variants well below 1 somewhere)
    for a, b in (("maskclip", "clearclip"), ("maskclip", "sclip"), ("clearclip", "sclip")):
        assert float((dense[a] * dense[b]).sum(dim=1).min()) < 0.99, (a, b)


def test_dense_variants_hand_values_on_a_two_token_block():
    """``_last_block_dense`` on a hand-built block (width 2, one head, ln_1 the identity) whose q, k, v are known:
    q = a*y, k = 0, v = y for the patch tokens y = e1, e2, with a^2 / sqrt(2) = ln 3 so that softmax(q q^T scale)
    rows are [3/4, 1/4]. MaskCLIP keeps v; ClearCLIP (q-q attention, no residual, no FFN) gives
    (3/4, 1/4), (1/4, 3/4); SCLIP adds softmax(k k^T scale) v = the uniform average (1/2, 1/2). The CLS token
    (index 0, set large) takes no part."""
    import math

    from c2s.teacher.clip import _last_block_dense

    attn = torch.nn.MultiheadAttention(2, 1)
    a = math.sqrt(math.sqrt(2) * math.log(3))
    with torch.no_grad():
        attn.in_proj_weight.copy_(torch.cat([a * torch.eye(2), torch.zeros(2, 2), torch.eye(2)]))
        attn.in_proj_bias.zero_()
        attn.out_proj.weight.copy_(torch.eye(2))
        attn.out_proj.bias.zero_()
    block = torch.nn.Module()
    block.attn, block.ln_1 = attn, torch.nn.Identity()
    x = torch.tensor([[[50.0, -20.0], [1.0, 0.0], [0.0, 1.0]]])  # (B=1, CLS + 2 patches, C=2)
    want = {"maskclip": [[1.0, 0.0], [0.0, 1.0]],
            "clearclip": [[0.75, 0.25], [0.25, 0.75]],
            "sclip": [[1.25, 0.75], [0.75, 1.25]]}
    with torch.no_grad():
        for variant, expected in want.items():
            got = _last_block_dense(block, x, variant)
            assert torch.allclose(got, torch.tensor([expected]), atol=1e-6), (variant, got)


def _regions():
    masks = torch.zeros(4, 40, 40, dtype=torch.bool)
    masks[0, 5:10, 5:20] = True
    masks[1, 20:, :] = True
    masks[2, 0:3, 30:39] = True
    masks[3, ::2, ::3] = True  # scattered pixels
    return masks, torch.tensor([0, 1, 1, 0])


def test_region_boxes_are_square_with_margin(teacher):
    masks, _ = _regions()
    boxes = teacher.region_boxes(masks)
    # region 0: rows 5..9, cols 5..19 -> 15 px wide; side 15 * (1 + 2 * 0.1) = 18 around centre (12.5, 7.5)
    assert torch.allclose(boxes[0], torch.tensor([3.5, -1.5, 21.5, 16.5]))
    assert torch.allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def test_local_batched_equals_per_region(teacher):
    images = _images()
    masks, index = _regions()
    batched = teacher.encode_regions(images, masks, index)
    single = torch.cat([teacher.encode_regions(images, masks[i:i + 1], index[i:i + 1]) for i in range(4)])
    assert batched.shape == (4, 64)
    assert torch.allclose(batched.norm(dim=1), torch.ones(4), atol=1e-5)
    assert (batched - single).abs().max() < 1e-5
    # Pixels outside a region do not reach its token (they become the CLIP mean).
    other = images.clone()
    other[0, 30:, :] = 0
    assert (teacher.encode_regions(other, masks[:1], index[:1]) - batched[:1]).abs().max() < 1e-6
    assert teacher.encode_regions(images, masks[:0], index[:0]).shape == (0, 64)
    with pytest.raises(ValueError, match="region 0 has an empty mask"):
        teacher.encode_regions(images, torch.zeros(1, 40, 40, dtype=torch.bool), index[:1])


def test_checkpoint_file_round_trip(teacher, tmp_path):
    path = tmp_path / "teacher.pt"
    torch.save(teacher.model.state_dict(), path)
    loaded = load_teacher({**CFG, "checkpoint": str(path), "allow_random": False, "seed": 123}, device="cpu")
    assert loaded.weights_hash == teacher.weights_hash
    images = _images()
    assert (loaded.encode_global(images) - teacher.encode_global(images)).abs().max() < 1e-6


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match=r"teacher\.checkpoint is null.*allow_random"):
        load_teacher({**CFG, "allow_random": False})
    missing = tmp_path / "nope" / "clip.pt"
    with pytest.raises(FileNotFoundError, match=r"teacher\.checkpoint.*nope/clip\.pt"):
        load_teacher({**CFG, "checkpoint": str(missing), "allow_random": False})


@pytest.mark.parametrize("tag", ["openai", "laion2b_s34b_b88k"])
def test_hub_tag_fails_at_once(tag, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"load_teacher tried the network: {args}")

    # No network attempt (this machine has none: an attempt would hang until its time-out), checked directly
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ValueError, match=r"pretrained tag.*download the weights elsewhere.*teacher\.checkpoint=/path"):
        load_teacher({**CFG, "arch": "ViT-B-16", "checkpoint": tag, "allow_random": False})


def test_bad_config_values():
    with pytest.raises(ValueError, match="dense_variant"):
        load_teacher({**CFG, "dense_variant": "nope"}, device="cpu")
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        load_teacher({**CFG, "dense_size": 44}, device="cpu")
    with pytest.raises(ValueError, match="needs a GPU"):
        load_teacher({**CFG, "precision": "fp16"}, device="cpu")


def test_text_embeddings_cache_hit(teacher, tmp_path, monkeypatch):
    names = ["cat", "potted_plant", "wall-concrete"]
    first = text_embeddings(teacher, names, "single", tmp_path)
    assert first.shape == (3, 64) and first.dtype == torch.float32
    assert torch.allclose(first.norm(dim=1), torch.ones(3), atol=1e-5)
    files = list((tmp_path / "text").glob("*.npy"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("cache miss: CLIP text tower called again")

    monkeypatch.setattr(teacher, "encode_text", boom)
    second = text_embeddings(teacher, names, "single", tmp_path)
    assert torch.equal(first, second)
    with pytest.raises(AssertionError, match="cache miss"):  # other names -> another key
        text_embeddings(teacher, names[:2], "single", tmp_path)


def test_text_ensemble_and_name_cleaning(teacher):
    single = text_embeddings(teacher, ["potted_plant"], "single", None)
    direct = teacher.encode_text(["a photo of a potted plant."])
    assert (single - direct).abs().max() < 1e-6
    ens = text_embeddings(teacher, ["cat", "dog"], "ensemble", None)
    assert ens.shape == (2, 64)
    assert torch.allclose(ens.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="teacher.templates"):
        text_embeddings(teacher, ["cat"], "many", None)
