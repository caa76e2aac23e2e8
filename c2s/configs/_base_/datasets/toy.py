# The toy world (c2s/world/): its inputs are named by provider references, made once under the cache root.
# Classes, seen/unseen split: c2s/world/classes.py ("toy": 5 colours x 4 shapes, 15 seen / 5 unseen).
data = dict(
    dataset="toy",
    root="toy:world",  # the generated world (c2s/world/generate.py), made from data.world once
    crop_size=(96, 96),
    scale=(96, 96),
    ratio_range=(0.75, 1.5),
    cat_max_ratio=0.75,
    flip_prob=0.5,
    photometric=False,
    eval_scale=(96, 96),
    eval_resize_label=False,
    on_bad_sample="error",  # error | skip (counted: c2s.data.readers.bad_sample_counts())
    seed=0,
    num_cpus=0.25,  # per Ray Data read/transform task
    # Every knob of the generator; the world's cache key hashes all of them.
    world=dict(
        images_train=2000,
        images_val=200,
        size=96,
        seed=0,
        min_objects=2,
        max_objects=4,
        min_radius=14,  # object half-size in px at size 96 (scaled with size): 28-44 px objects
        max_radius=22,
        overlap=1.05,  # object centres at least overlap * (r1 + r2) apart: no object is hidden
        rotation_deg=20.0,
        colour_jitter=0.03,  # per-object RGB jitter, fraction of 255
        shade=0.12,  # per-object brightness factor in 1 +- shade
        pixel_noise=0.03,
        texture=0.12,  # background texture amplitude
    ),
)
# The toy CLIP's pretraining (c2s/world/clip.py, `c2s world pretrain-teacher`); cache key hashes it.
toy_clip = dict(
    # Half the first recipe's pairs (1500 x 64) at nearly its accuracy (docs/decisions.md#toy-clip-recipe)
    steps=1000,
    batch_size=48,
    lr=1.5e-3,
    weight_decay=0.1,
    warmup_steps=50,
    pool_images=3000,  # images rendered once from the world's "pretrain" stream
    full_frac=0.25,  # batch fractions: full images with multi-object captions,
    masked_frac=0.35,  # masked single-object crops (the rest: plain single-object crops)
    crop_margin=(0.05, 0.35),
    prompt_frac=0.5,  # single-object captions use "a photo of a {}." this often
    eval_images=300,  # val images whose objects are the held-out zero-shot crops
    eval_margin=0.15,
    background_frac=0.0,  # background views captioned "background" (toy_stuff sets it; 0 keeps this CLIP)
    seed=0,
    threads=2,
    device="cpu",  # or "cuda" where one is lent (hashed into the cache key unless "cpu")
    log_every=100,
)
# The toy students' backbone pretraining (c2s/world/backbone.py, `c2s world pretrain-student`): the
# ImageNet analogue, seen-class object crops of the "pretrain" stream labelled with colour and shape.
# Used when model.pretrained="toy:backbone"; the cache key hashes this section, data.world and the model's arch.
toy_backbone = dict(
    steps=600,
    batch_size=64,
    lr=2e-3,
    warmup_frac=0.1,
    weight_decay=0.01,
    pool_images=2200,
    heldout_images=300,
    crop=64,
    flip_prob=0.5,
    seed=0,
    threads=2,
    log_every=100,
)
