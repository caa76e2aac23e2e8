# coco_stuff164k: inductive zero-shot split from c2s/data/catalog.py (seen classes only reach training).
data = dict(
    dataset="coco_stuff164k",
    root=None,  # local folder in mmseg layout; checked with `c2s data check ROOT --dataset coco_stuff164k`
    crop_size=(512, 512),
    scale=(2048, 512),  # mmseg RandomResize base scale (long, short)
    ratio_range=(0.5, 2.0),
    cat_max_ratio=0.75,
    flip_prob=0.5,
    photometric=True,
    eval_scale=(2048, 512),
    eval_resize_label=False,  # mmseg evaluates at the label's original size (logits are up-sampled)
    on_bad_sample="error",  # error | skip (counted: c2s.data.readers.bad_sample_counts())
    seed=0,
    num_cpus=0.25,  # per Ray Data read/transform task
)
