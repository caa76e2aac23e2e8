# The toy world (c2s/data/toyworld.py): generated on demand under the cache root when root is null.
data = dict(
    dataset="toy",
    root=None,
    crop_size=(96, 96),
    scale=(96, 96),
    ratio_range=(0.75, 1.5),
    cat_max_ratio=0.75,
    flip_prob=0.5,
    photometric=False,
    eval_scale=(96, 96),
    on_bad_sample="error",
    seed=0,
    num_cpus=0.25,
    world=dict(images_train=2000, images_val=200, size=96, seed=0),
)
