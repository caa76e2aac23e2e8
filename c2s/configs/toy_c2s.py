# The embedded default: C2S on the toy world with the toy CLIP (make demo). Tuned in the training-job issue.
_base_ = ["./_base_/default.py", "./_base_/datasets/toy.py", "./_base_/students/segformer_tiny.py"]
# "toy": the backbone pretrained on seen-class object crops (c2s/student/pretrain.py), the toy world's
# ImageNet initialisation; the baseline inherits it, as both rows of the paper's Table 3 start from ImageNet.
model = dict(embed_dim=256, pretrained="toy")
teacher = dict(arch="c2s-toy-vit", image_size=64, dense_size=96, batch_size=16)
# 300 steps keep `make demo` (toy CLIP pretraining + two runs) inside 25 minutes on 2 CPU cores.
train = dict(iters=300, batch_size=16, workers=1, cpus_per_worker=0.5, log_interval=25,
             checkpoint_interval=150, eval_interval=300)
optim = dict(lr=6e-4, warmup_iters=50)
evaluation = dict(mode="whole", crop_size=(96, 96), stride=(64, 64))
# Loss weights measured on the toy world (issue 5 note; tools/offline_c2s.py, seed 0, 300 steps from the toy
# backbone, sIoU / uIoU / hIoU): w_global 1.0 -> 18.3 / 19.9 / 19.0, 0.3 -> 33.6 / 33.1 / 33.3,
# 0.1 -> 46.9 / 40.2 / 43.3, 0 -> 54.4 / 35.6 / 43.0 (a prototype of the toy backbone). At full weight the
# global term pulls seen pixels onto the unseen class of their colour (42% of seen pixels).
# NEL's focal weight (ZegCLIP: 100), same probe with the toy backbone: C2S 100 -> 23.2 / 26.5 / 24.7,
# 10 -> 42.1 / 37.7 / 39.8; the baseline 100 -> 35.4 / 7.7 / 12.6, 10 -> 47.9 / 12.3 / 19.6.
loss = dict(w_global=0.1, nel_focal_weight=10.0)
