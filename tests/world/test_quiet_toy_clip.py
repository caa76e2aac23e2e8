"""`make demo`'s toy-CLIP pretraining starts without open_clip's "initialized randomly" warning (issue 14.9)."""

from __future__ import annotations

import logging

from c2s.world.clip import pretrain

WARNING = "No pretrained weights loaded for model 'c2s-test-vit'. Model initialized randomly."


def test_pretraining_from_scratch_does_not_warn_about_random_weights(caplog):
    import open_clip

    caplog.set_level(logging.WARNING)
    pretrain(dict(images_train=4, images_val=4, max_objects=2),
             dict(steps=2, batch_size=8, warmup_steps=1, pool_images=10, eval_images=3, log_every=1000, threads=1),
             "c2s-test-vit", log=lambda msg: None)
    assert WARNING not in caplog.messages
    open_clip.create_model("c2s-test-vit", pretrained=None)  # the filter is gone again afterwards
    assert WARNING in caplog.messages
