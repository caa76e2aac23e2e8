# The embedded default: C2S on the toy world with the toy CLIP (make demo), at the paper's loss weights.
# toy_stuff, not toy: every pixel labelled, as COCO-Stuff in Table 3 (docs/decisions.md#toy-world-labels)
_base_ = ["./_base_/default.py", "./_base_/datasets/toy_stuff.py", "./_base_/students/segformer_tiny.py"]
# toy:backbone, the toy world's ImageNet: both Table 3 rows (C2S, toy_baseline) start from it (docs/world.md)
model = dict(embed_dim=256, pretrained="toy:backbone")
teacher = dict(arch="c2s-toy-vit", checkpoint="toy:clip", image_size=64, dense_size=96, batch_size=16)
# 300 steps keep `make demo` (toy CLIP pretraining + two runs) inside 25 minutes on 2 CPU cores.
train = dict(iters=300, batch_size=16, workers=1, cpus_per_worker=0.5, log_interval=25,
             checkpoint_interval=150, eval_interval=300)
# make demo trains these at lr 1.2e-3 (docs/decisions.md#demo-learning-rate); the results book at 6e-4
optim = dict(lr=6e-4, warmup_iters=50)
evaluation = dict(mode="whole", crop_size=(96, 96), stride=(64, 64))
# Loss weights: the paper's (_base_/method.py); the toy-world probes: docs/decisions.md#toy-loss-weights
