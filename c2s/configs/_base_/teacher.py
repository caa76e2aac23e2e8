# The frozen CLIP teacher (Sec. 3.1). Weights always come from a local file; no hub.
teacher = dict(
    arch="ViT-B-16",  # open_clip architecture name (or one a package registers, c2s/teacher/archs.py)
    checkpoint=None,  # OpenAI .pt, open_clip .bin/.safetensors or a state dict; null only with allow_random
    allow_random=False,  # tests/benchmarks only: random weights when checkpoint is null
    # Activation: OpenAI's CLIP weights need QuickGELU, open_clip's "ViT-B-16" config builds nn.GELU. null (=
    # auto) reads the file's origin (TorchScript archive, OpenAI's JIT keys, open_clip_config.json beside it)
    # and refuses when it cannot tell for an arch with both kinds of weights; true | false force one.
    # (null, not "auto": a str default would make the config refuse the override teacher.quick_gelu=true.)
    quick_gelu=None,
    image_size=224,  # CLIP input size for global and local tokens (the size the weights were trained at)
    dense_size=448,  # square input size for dense tokens; grid = dense_size // patch (pos. embedding interpolated)
    # Text-aligned dense tokens from the last block (method-notes.md): all variants drop the last block's
    # residual and FFN, then ln_post + visual projection.
    #   maskclip: value path only, out_proj(v(ln_1 x))
    #   clearclip: softmax(q q^T) attention over v
    #   sclip: (softmax(q q^T) + softmax(k k^T)) attention over v (SCLIP's correlative attention)
    dense_variant="maskclip",
    templates="single",  # single ("a photo of a {}.") | ensemble (CLIP's 80 ImageNet prompts, averaged)
    local_margin=0.1,  # margin around a region's (squared) bounding box, as a fraction of its side
    max_regions=16,  # L: local-token slots per image (seen + latent regions); the largest L are kept
    ignore_index=255,  # label id of unannotated pixels (unseen + background after the seen mapping)
    precision="auto",  # auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16 (GPU only)
    torch_threads=0,  # intra-op threads per actor; 0 leaves torch's default (set it when CPUs are shared)
    seed=0,  # torch seed for random weights (allow_random=True), so every actor builds the same teacher
    # Ray Data actor pool
    actors=(1, 1),  # (min, max) actors
    num_gpus=0.0,
    num_cpus=0.5,
    batch_size=8,
    # Fault injection for tests and demos of the elastic pool: every actor call sleeps this long first (a
    # slow teacher, so training waits and Ray Data grows the pool towards actors[1]); 0 = off.
    simulate_delay_s=0.0,
    # Token cache (c2s/teacher/cache.py, `c2s tokens`): the teacher's outputs for `cache_epochs` augmented
    # epochs (epoch e uses reader seed train.seed + e), under <cache_root>/tokens/<key>/, shared by every run
    # with the same dataset, data pipeline, teacher, mining and seed (loss/bank/student keys do not matter).
    cache=False,  # read materialised tokens instead of running the pool (built on first use if missing)
    cache_epochs=1,  # augmented epochs in the cache; training cycles over them
)
# Latent class mining (Eq. 1 and the text after it).
mining = dict(
    window_sizes=(2, 4, 8),  # O: sliding-window sizes (tokens) for the seeds; stride max(1, o // 2)
    seed_min_unlabeled=0.5,  # a window seeds only if at least this fraction of its tokens is unannotated
    max_seeds=256,  # cap on seeds (random subset drawn with `seed`); bounds K-Means and merge cost
    token_unlabeled_frac=0.5,  # a token is unannotated when at least this fraction of its pixels is ignore
    kmeans_iters=20,  # cosine K-Means iterations (stops earlier when assignments no longer change)
    merge_threshold=0.9,  # merge clusters whose centres have cosine similarity above this
    min_region=4,  # drop latent regions smaller than this many tokens
    # What ends a latent region: "tokens" (half-way to the next mostly annotated token) or "labels" (the
    # annotation's edge; make demo's). The results book was mined with "tokens":
    # docs/decisions.md#latent-regions-end-where-the-labels-do
    edges="tokens",
    k_max=8,  # latent classes kept per image (the largest), ids num_seen + j, j < k_max
    seed=0,  # seeds the seed subsampling above; the result is deterministic for a fixed value
)
