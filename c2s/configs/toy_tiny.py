# Test-size toy world for integration tests: the random-weight test CLIP, 24 training images, batch 4, one
# log row per step. Tests add their own train.* keys (workers, checkpoint interval, ...). Not for results.
_base_ = ["./toy_c2s.py"]
model = dict(embed_dim=64)
teacher = dict(arch="c2s-test-vit", checkpoint=None, allow_random=True, image_size=32, dense_size=48, batch_size=4, num_cpus=0.5)
# The VOC-like "toy" labels (background ignored): 15 seen classes, as the integration tests expect.
data = dict(dataset="toy", num_cpus=0.25, world=dict(images_train=24, images_val=4))
train = dict(cpus_per_worker=0.5, batch_size=4, log_interval=1, eval_interval=100)
bank = dict(size=12)
optim = dict(warmup_iters=1)
# Seconds-long backbone "pretraining": exercises model.pretrained="toy:backbone" (resolution, cache, loading) only.
toy_backbone = dict(steps=3, batch_size=8, pool_images=12, heldout_images=6, crop=32)
