# The frozen CLIP teacher (Sec. 3.1). Weights always come from a local file; no hub.
teacher = dict(
    arch="ViT-B-16",  # open_clip architecture name (or one registered in c2s/teacher/clip.py)
    checkpoint=None,  # local weights file; null only with allow_random=True
    allow_random=False,  # tests only: random weights when checkpoint is null
    image_size=224,  # CLIP input size for global and local tokens
    dense_size=448,  # input size for dense tokens (positional embedding interpolated)
    dense_variant="maskclip",  # maskclip | sclip | clearclip
    templates="single",  # single ("a photo of a {}.") | ensemble (CLIP/ViLD prompts)
    local_margin=0.1,  # bounding-box margin around a region, as a fraction of its size
    precision="auto",  # auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16
    # Ray Data actor pool
    actors=(1, 1),  # (min, max) actors
    num_gpus=0.0,
    num_cpus=0.5,
    batch_size=8,
    cache=False,  # read materialised tokens (c2s tokens) instead of running the pool
)
# Latent class mining (Eq. 1 and the text after it).
mining = dict(
    window_sizes=(2, 4, 8),
    kmeans_iters=20,
    merge_threshold=0.9,  # merge clusters whose centres have cosine similarity above this
    min_region=4,  # drop latent regions smaller than this many tokens
    k_max=8,  # latent classes kept per image (padded to this many)
    seed=0,
)
