# The embedded default: C2S on the toy world with the toy CLIP (make demo). Tuned in the training-job issue.
# The dataset is "toy_stuff" (issue 13): every pixel annotated, background a seen class, as in COCO-Stuff, the
# dataset of the paper's Table 3. On "toy" (VOC-like, background ignored) 93% of the latent-mined pixels were
# background and the latent embedding cost full C2S 6.3 hIoU against "+ distillation" (3 seeds, Table 3 sweep);
# `data.dataset=toy toy_clip.background_frac=0.0` gives that world back.
_base_ = ["./_base_/default.py", "./_base_/datasets/toy_stuff.py", "./_base_/students/segformer_tiny.py"]
# The backbone pretrained on seen-class object crops (c2s/world/backbone.py), the toy world's ImageNet
# initialisation; the baseline inherits it, as both rows of the paper's Table 3 start from ImageNet.
model = dict(embed_dim=256, pretrained="toy:backbone")
teacher = dict(arch="c2s-toy-vit", checkpoint="toy:clip", image_size=64, dense_size=96, batch_size=16)
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
# Issue 13 (this file now uses ZegCLIP's NEL, the _base_ default). Measured with tools/offline_c2s.py, seed 0,
# 300 steps, a 3-epoch token cache (teacher.cache_epochs=3), sIoU / uIoU / hIoU:
#   before the method fixes (no logit bias, paper pooling, Eq. 4 literal):
#     paper weights (w_global 1, focal 100), zegclip:  C2S  4.0 / 19.7 /  6.7 (87% of seen pixels -> unseen)
#     this file's weights, zegclip:                    C2S 21.0 / 22.7 / 21.8, toy_baseline 50.5 / 27.5 / 35.6
#     this file's weights, "present":                  C2S 35.0 / 30.2 / 32.4
#   with the fixes now in _base_/method.py (loss.learn_logit_bias, distill.global_pool=cosine,
#   distill.local_false_negative_cos=0.95):
#     paper weights, zegclip:                          C2S 35.0 / 15.6 / 21.5; baseline (+ centring) 51.0 / 21.2 / 30.0
#     this file's weights, "present":                  C2S 51.0 / 29.2 / 37.1
#     this file's weights, zegclip:                    C2S 52.0 / 33.0 / 40.4, toy_baseline 55.8 / 26.0 / 35.4
# At the paper's weights C2S still loses to the baseline on the toy world: the global term's gradient is the
# largest of the four (norm 3.5 vs local 1.4, NEL 2.6, CE 0.6 on a trained student) and nearly orthogonal to
# the pixel terms (cosine 0.07), and the student learns colour but not shape (seen pixels: colour right 99.6%,
# shape right 57%). Hence two knobs (loss.w_global=0.1, loss.nel_focal_weight=10) were kept on "toy".
# On "toy_stuff" (this file's dataset since issue 13; its toy CLIP knows "background") the paper's defaults
# reach the goal, so this file no longer moves them. tools/offline_c2s.py, seed 0, 300 steps, 1-epoch cache,
# sIoU / uIoU / hIoU:
#   paper defaults (w_global 1, NEL focal 100): baseline 37.0 / 3.0 / 5.6, + distillation 46.5 / 22.3 / 30.1,
#                                               full C2S 43.0 / 19.1 / 26.4 (+20.9 hIoU, +16.1 uIoU)
#   w_global 0.1, focal 10 (the old knobs):     baseline 40.8 / 1.7 / 3.2, full C2S 58.5 / 45.9 / 51.4
# (with the "toy" CLIP, which never saw the word, 95% of background pixels were read as "blue square").
