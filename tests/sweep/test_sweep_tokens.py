"""CLIP once per sweep (c2s/sweep/tokens.py): the default that makes a sweep's trials read token caches, and
the counts of the images CLIP encoded (no Ray started here; tests/sweep/test_sweep_run.py runs a sweep)."""

from __future__ import annotations

import pytest

from c2s.config import load_config
from c2s.sweep.run import teacher_images
from c2s.sweep.spec import expand_trials, parse_spec, resources_needed
from c2s.sweep.tables import RunRows, collect_trial_row
from c2s.sweep.tokens import with_token_cache_default
from c2s.teacher.calls import write_call_count
from c2s.train.pipeline import stream_epochs

BASE = {"name": "t", "base": "toy_tiny", "overrides": {"train.iters": 10}, "seeds": [0, 1],
        "variants": {"full": {}, "baseline": {"distill.enabled": False, "latent.enabled": False}}}


def spec(**kw):
    return parse_spec({**BASE, **kw}, "sweeps/test.yaml")


def test_spec_sets_finds_a_key_in_overrides_variants_and_space():
    assert not spec().sets("teacher.cache")
    assert spec(overrides={"train.iters": 10, "teacher.cache": False}).sets("teacher.cache")
    assert spec(variants={"live": {"teacher.cache": False}}).sets("teacher.cache")
    assert spec(space={"teacher.cache_epochs": {"grid": [1, 2]}}).sets("teacher.cache_epochs")
    assert spec(resources={"train_workers": 1}).sets("train.workers")


def test_the_default_is_a_shared_override_so_resources_count_no_clip_actor():
    cached, live = spec(), spec(overrides={"train.iters": 10, "teacher.cache": False})
    assert cached.trial_overrides()["teacher.cache"] is True and live.trial_overrides()["teacher.cache"] is False
    assert resources_needed(cached)["parts"]["teacher actors"]["CPU"] == 0.0
    assert resources_needed(live)["parts"]["teacher actors"]["CPU"] > 0.0


def test_trials_that_need_the_teacher_read_a_cache_covering_their_run(tmp_path):
    s = spec(overrides={"train.iters": 10, "cache_root": str(tmp_path)})
    logged = []
    trials = with_token_cache_default(s, expand_trials(s), logged.append)
    cfg = load_config("toy_tiny")
    # toy_tiny's world has 24 training images; 10 steps x batch 4 = 40 rows = 2 epochs (ceil)
    epochs = stream_epochs(10, int(cfg.train.batch_size), int(cfg.train.workers), 24)
    assert epochs == 2
    by_label = {(t.label, t.seed): t.overrides for t in trials}
    for seed in (0, 1):
        full, baseline = by_label[("full", seed)], by_label[("baseline", seed)]
        assert full["teacher.cache"] is True and full["teacher.cache_epochs"] == epochs
        assert "teacher.cache_epochs" not in baseline  # the baseline never runs CLIP: nothing to cache
    assert len(logged) == 1 and "token caches (CLIP once per distinct cache key) for 2 trial(s)" in logged[0]


@pytest.mark.parametrize("where", ["overrides", "variants"])
def test_a_spec_that_says_teacher_cache_keeps_its_word(tmp_path, where):
    if where == "overrides":
        s = spec(overrides={"train.iters": 10, "teacher.cache": False})
    else:
        s = spec(variants={"live": {"teacher.cache": False}, "cached": {"teacher.cache": True}})
    trials = expand_trials(s)
    assert with_token_cache_default(s, trials, print) == trials


def test_a_spec_that_sets_cache_epochs_keeps_them(tmp_path):
    s = spec(overrides={"train.iters": 10, "teacher.cache_epochs": 3, "cache_root": str(tmp_path)})
    trials = with_token_cache_default(s, expand_trials(s), print)
    assert {t.overrides.get("teacher.cache_epochs") for t in trials} == {3}
    assert {t.overrides.get("teacher.cache") for t in trials} == {True}  # the default (a no-op for the baseline)


def test_teacher_images_per_trial_and_in_all(tmp_path):
    s = spec()
    trial = expand_trials(s)[0]
    run = tmp_path / "run"
    write_call_count(run / "teacher_calls", "actor-a", batches=3, images=12)
    write_call_count(run / "teacher_calls", "actor-b", batches=1, images=4)
    live = collect_trial_row(run, trial, sweep="t")
    cached = collect_trial_row(tmp_path / "cached_run", trial, sweep="t")
    assert (live["teacher_images"], cached["teacher_images"]) == (16, 0)
    caches = [{"teacher_calls": {"batches": 10, "images": 40}}, {"teacher_calls": {"batches": 0, "images": 0}}]
    assert teacher_images(caches, [RunRows(trials=[live]), RunRows(trials=[cached])]) == \
        {"cache_builds": 40, "trials": 16, "total": 56}
