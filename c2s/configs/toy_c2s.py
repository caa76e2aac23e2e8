# The embedded default: C2S on the toy world with the toy CLIP (make demo). Tuned in the training-job issue.
_base_ = ["./_base_/default.py", "./_base_/datasets/toy.py", "./_base_/students/segformer_tiny.py"]
model = dict(embed_dim=256)
teacher = dict(arch="c2s-toy-vit", image_size=64, dense_size=96, batch_size=16)
# 300 steps keep `make demo` (toy CLIP pretraining + two runs) inside 25 minutes on 2 CPU cores.
train = dict(iters=300, batch_size=16, workers=1, cpus_per_worker=0.5, log_interval=25,
             checkpoint_interval=150, eval_interval=300)
optim = dict(lr=6e-4, warmup_iters=50)
evaluation = dict(mode="whole", crop_size=(96, 96), stride=(64, 64))
