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
# NEL mode (issue 13; the _base_ default is ZegCLIP's "zegclip" reading). Measured this session with
# tools/offline_c2s.py, seed 0, 300 steps, a 3-epoch token cache (teacher.cache_epochs=3), sIoU / uIoU / hIoU:
#   zegclip, paper weights (w_global 1, focal 100):          C2S  4.0 / 19.7 /  6.7 (87% of seen pixels -> unseen)
#   same + loss.learn_logit_bias + distill.global_pool=centered: 6.4 / 21.2 /  9.9 (L_g 2.16 -> 1.00 at step 300)
#   zegclip, this file's weights (w_global 0.1, focal 10):   C2S 21.0 / 22.7 / 21.8, toy_baseline 50.5 / 27.5 / 35.6
# Under ZegCLIP's NEL every absent seen class is pushed down everywhere; on the toy world that drives seen
# pixels onto the unseen class of their colour once distillation aligns the features with CLIP (seen-pixel
# median logit: own class -0.58, best unseen +3.17 at paper weights), so the baseline wins. The "present"
# reading is what the toy claim was measured with (issue 13's probe, same tool, 1-epoch cache: C2S 40.1 /
# 30.3 / 34.5 vs baseline 46.6 / 18.5 / 26.5); this session, same probe as above: C2S 35.0 / 30.2 / 32.4 with
# "present" vs 21.0 / 22.7 / 21.8 with "zegclip". It stays here until the cause above is fixed in the method.
loss = dict(w_global=0.1, nel_focal_weight=10.0, nel_mode="present")
