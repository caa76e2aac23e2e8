"""Sweep specs: parsing, expansion, validation errors, resources; every provided sweeps/*.yaml validates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from c2s.config import load_config
from c2s.sweep.spec import (
    SWEEPS_DIR,
    ClusterFitError,
    SpecError,
    apply_updates,
    check_cluster_fits,
    expand_trials,
    load_spec,
    overrides_from_tune_config,
    parse_spec,
    resources_needed,
    spec_paths,
    tune_param_space,
    tune_scheduler,
)

BASE = {"name": "t", "base": "toy_c2s", "overrides": {"train.iters": 300}}


def spec(**kw):
    return parse_spec({**BASE, **kw}, "sweeps/test.yaml")


def test_grid_times_seeds_expansion_and_ids():
    s = spec(space={"loss.tau": {"grid": [0.03, 0.07, 0.2]}, "bank.size": {"grid": [8, 24]}}, seeds=[0, 1])
    trials = expand_trials(s)
    assert len(trials) == 3 * 2 * 2
    assert [t.trial_id for t in trials[:4]] == ["t000_s0", "t000_s1", "t001_s0", "t001_s1"]
    assert trials[-1].trial_id == "t005_s1" and trials[-1].point_id == "t005"
    t = trials[3]
    assert t.params == {"loss.tau": 0.03, "bank.size": 24}
    assert t.label == "loss.tau=0.03, bank.size=24"
    # teacher.cache: the sweep's default (CLIP once per sweep, c2s/sweep/tokens.py)
    assert t.overrides == {"train.iters": 300, "teacher.cache": True, "loss.tau": 0.03, "bank.size": 24,
                           "train.seed": 1}
    cfg = load_config(s.base, t.overrides)  # every trial's overrides load
    assert cfg.loss.tau == 0.03 and cfg.bank.size == 24 and cfg.train.seed == 1 and cfg.train.iters == 300
    # deterministic: the same spec gives the same trials
    assert [x.overrides for x in expand_trials(s)] == [x.overrides for x in trials]


def test_variants_times_grid_and_defaults():
    s = spec(variants={"baseline": {"distill.enabled": False, "latent.enabled": False},
                       "+ distillation": {"latent.enabled": False}},
             space={"loss.tau": {"grid": [0.05, 0.1]}}, seeds=[3])
    assert (s.metric, s.mode, s.scheduler.kind, s.max_concurrent, s.max_failures) == ("hIoU", "max", "none", 1, 1)
    trials = expand_trials(s)
    assert len(trials) == 2 * 2 * 1
    assert [t.trial_id for t in trials] == ["t000_s3", "t001_s3", "t002_s3", "t003_s3"]
    assert trials[1].variant == "baseline" and trials[1].label == "baseline, loss.tau=0.1"
    assert trials[2].overrides["latent.enabled"] is False and "distill.enabled" not in trials[2].overrides


def test_random_search_samples_and_tune_space():
    s = spec(space={"optim.lr": {"loguniform": [1e-5, 1e-3]}, "loss.alpha": {"choice": [0.5, 1.0]},
                    "bank.size": {"grid": [8, 16]}}, num_samples=4, seeds=[0, 1])
    assert s.is_random
    trials = expand_trials(s)
    assert len(trials) == 2 * 4 * 2
    lrs = [t.params["optim.lr"] for t in trials]
    assert all(1e-5 <= x <= 1e-3 for x in lrs) and len(set(lrs)) == 8  # 8 points, each run with 2 seeds
    assert {t.params["loss.alpha"] for t in trials} <= {0.5, 1.0}
    assert [t.params["optim.lr"] for t in expand_trials(s)] == lrs  # seeded by search_seed

    from ray import tune
    from ray.tune.search.sample import Categorical, Float

    space = tune_param_space(s)
    assert space["train.iters"] == 300
    assert space["bank.size"] == tune.grid_search([8, 16])
    assert space["train.seed"] == tune.grid_search([0, 1])
    assert isinstance(space["optim.lr"], Float) and isinstance(space["loss.alpha"], Categorical)
    assert math.isclose(space["optim.lr"].lower, 1e-5) and math.isclose(space["optim.lr"].upper, 1e-3)


def test_tune_space_variants_map_back_to_overrides():
    s = spec(variants={"a": {"distill.kind": "cosine"}, "b": {"distill.kind": "l2"}}, seeds=[0])
    from ray import tune

    space = tune_param_space(s)
    assert space["variant"] == tune.grid_search(["a", "b"])
    got = overrides_from_tune_config(s, {"variant": "b", "train.iters": 300, "train.seed": 0})
    assert got == {"distill.kind": "l2", "train.iters": 300, "train.seed": 0}


def test_asha_scheduler():
    s = spec(space={"loss.tau": {"grid": [0.05]}}, scheduler={"kind": "asha", "grace_period": 100})
    assert (s.scheduler.kind, s.scheduler.grace_period, s.scheduler.max_t) == ("asha", 100, 300)
    from ray.tune.schedulers import ASHAScheduler

    assert isinstance(tune_scheduler(s), ASHAScheduler)
    assert tune_scheduler(spec(space={"loss.tau": {"grid": [0.05]}})) is None
    with pytest.raises(SpecError, match=r"scheduler.grace_period.*\(400\) must be <= scheduler.max_t \(300\)"):
        spec(space={"loss.tau": {"grid": [0.05]}}, scheduler={"kind": "asha", "grace_period": 400})
    with pytest.raises(SpecError, match=r"'scheduler.grace'.*grace_period"):
        spec(space={"loss.tau": {"grid": [0.05]}}, scheduler={"kind": "asha", "grace": 4})


def test_misspelt_config_key_names_key_file_and_closest():
    with pytest.raises(SpecError, match=r"sweeps/test.yaml.*space.loss.tua.*'loss.tua'.*loss\.tau"):
        spec(space={"loss.tua": {"grid": [0.1]}})
    with pytest.raises(SpecError, match=r"variants.base.*'distill.enabeld'.*distill\.enabled"):
        spec(variants={"base": {"distill.enabeld": False}})
    with pytest.raises(SpecError, match=r"overrides.*'train.iter'.*train\.iters"):
        parse_spec({**BASE, "overrides": {"train.iter": 3}, "space": {"loss.tau": {"grid": [0.1]}}})


def test_wrong_value_type_is_an_error():
    with pytest.raises(SpecError, match=r"space.bank.size.*'bank.size' expects int.*2.5"):
        spec(space={"bank.size": {"grid": [8, 2.5]}})
    with pytest.raises(SpecError, match=r"space.bank.size.*uniform.*int 24.*grid or choice"):
        spec(space={"bank.size": {"uniform": [8, 48]}})
    with pytest.raises(SpecError, match=r"loguniform.*lo > 0"):
        spec(space={"optim.lr": {"loguniform": [0, 1e-3]}})


def test_empty_space_empty_grid_and_unknown_spec_key():
    with pytest.raises(SpecError, match=r"'space' is empty"):
        spec(space={})
    with pytest.raises(SpecError, match=r"'space.loss.tau.grid' is empty"):
        spec(space={"loss.tau": {"grid": []}})
    with pytest.raises(SpecError, match=r"'space' is missing"):
        spec()
    with pytest.raises(SpecError, match=r"'seed' is not a spec key.*Did you mean: seeds"):
        spec(space={"loss.tau": {"grid": [0.1]}}, seed=[0])
    with pytest.raises(SpecError, match=r"'space.loss.tau' has unknown kind 'gird'.*grid"):
        spec(space={"loss.tau": {"gird": [0.1]}})
    with pytest.raises(SpecError, match=r"'metric' must be one of.*'hiou'"):
        spec(space={"loss.tau": {"grid": [0.1]}}, metric="hiou")
    with pytest.raises(SpecError, match=r"'base'.*toy_c2z.*toy_c2s"):
        parse_spec({**BASE, "base": "toy_c2z", "space": {"loss.tau": {"grid": [0.1]}}})
    with pytest.raises(SpecError, match=r"'resources.teacher_cpu' is not a resources key.*teacher_cpus"):
        spec(space={"loss.tau": {"grid": [0.1]}}, resources={"teacher_cpu": 1})


def test_load_spec_from_file_with_updates(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "space": {"loss.tau": {"grid": [0.1, 0.2]}}, "seeds": [0]}))
    s = load_spec(path, ["base=voc12_segnext_b", "overrides.train.iters=40000", "seeds=[0, 1, 2]"])
    assert s.base == "voc12_segnext_b" and s.overrides == {"train.iters": 40000} and s.seeds == [0, 1, 2]
    assert len(expand_trials(s)) == 6
    assert apply_updates({"scheduler": "asha"}, {"scheduler.grace_period": 5}) == \
        {"scheduler": {"kind": "asha", "grace_period": 5}}
    with pytest.raises(SpecError, match=r"'sed' is not a spec key.*seeds"):
        load_spec(path, ["sed=[1]"])
    with pytest.raises(SpecError, match=r"is not a file"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SpecError, match=r"empty.yaml: is empty"):
        load_spec(tmp_path / "empty.yaml")


def test_resources_needed_and_cluster_fit():
    # the live CLIP pool (a sweep reads token caches unless its spec says teacher.cache: false)
    s = spec(space={"loss.tau": {"grid": [0.05, 0.1, 0.2]}}, seeds=[0, 1], max_concurrent=2,
             overrides={"train.iters": 300, "teacher.cache": False},
             resources={"train_workers": 2, "cpus_per_worker": 0.5, "gpus_per_worker": 0.5,
                        "teacher_actors": [1, 2], "teacher_cpus": 0.5, "teacher_gpus": 0.25, "driver_cpus": 0.25})
    need = resources_needed(s)
    # per trial: 2 workers x 0.5 CPU + 2 actors (max) x 0.5 + 2 data tasks x data.num_cpus 0.25 + driver 0.25
    # = 2.75 CPU; GPU: 2 x 0.5 + 2 x 0.25 = 1.5
    assert need["per_trial"] == {"CPU": 2.75, "GPU": 1.5}
    assert (need["CPU"], need["GPU"], need["max_concurrent"]) == (5.5, 3.0, 2)
    check_cluster_fits(need, {"CPU": 5.5, "GPU": 3.0, "memory": 1e9})
    with pytest.raises(ClusterFitError, match=r"needs CPU=5.5, GPU=3.*max_concurrent 2.*but the cluster has "
                                              r"CPU=2, GPU=0; short of CPU, GPU"):
        check_cluster_fits(need, {"CPU": 2.0})
    with pytest.raises(ClusterFitError, match=r"Lower max_concurrent to 1"):
        check_cluster_fits(need, {"CPU": 4.0, "GPU": 2.0})
    # the teacher token cache needs no actors
    cached = spec(space={"loss.tau": {"grid": [0.05]}}, overrides={"teacher.cache": True})
    assert resources_needed(cached)["parts"]["teacher actors"] == {"CPU": 0.0, "GPU": 0.0}
    # nor does a baseline trial (Table 3's first row): it never starts the CLIP pool
    baseline = spec(space={"loss.tau": {"grid": [0.05]}}, overrides={"distill.enabled": False, "latent.enabled": False},
                    resources={"teacher_actors": [1, 2], "teacher_cpus": 0.5})
    assert resources_needed(baseline)["parts"]["teacher actors"] == {"CPU": 0.0, "GPU": 0.0}
    live = spec(space={"loss.tau": {"grid": [0.05]}}, resources={"teacher_actors": [1, 2], "teacher_cpus": 0.5},
                overrides={"teacher.cache": False})
    assert resources_needed(live)["parts"]["teacher actors"] == {"CPU": 1.0, "GPU": 0.0}
    # a spec that says nothing about the teacher reads token caches: no actors either
    default = spec(space={"loss.tau": {"grid": [0.05]}}, resources={"teacher_actors": [1, 2], "teacher_cpus": 0.5})
    assert resources_needed(default)["parts"]["teacher actors"] == {"CPU": 0.0, "GPU": 0.0}
    with pytest.raises(SpecError, match=r"resources.*sets train.workers, which overrides also sets"):
        spec(space={"loss.tau": {"grid": [0.05]}}, overrides={"train.workers": 2}, resources={"train_workers": 1})


def test_the_trial_driver_asks_for_some_cpu():
    """Ray Tune refuses a trial whose driver asks for {"CPU": 0} (an empty bundle: ray/air/execution/resources/
    request.py); a sweep with driver_cpus 0 once got that traceback after its token caches were built."""
    with pytest.raises(SpecError, match=r"'resources.driver_cpus' must be > 0, got 0: Ray Tune cannot place a trial"):
        spec(space={"loss.tau": {"grid": [0.05]}}, resources={"driver_cpus": 0})
    omitted = spec(space={"loss.tau": {"grid": [0.05]}})  # the default, counted in the trial's resources
    assert resources_needed(omitted)["parts"]["trial driver"] == {"CPU": 0.25, "GPU": 0.0}
    small = spec(space={"loss.tau": {"grid": [0.05]}}, resources={"driver_cpus": 0.01})
    assert resources_needed(small)["parts"]["trial driver"] == {"CPU": 0.01, "GPU": 0.0}


EXPECTED_TRIALS = {"tau": 6, "alpha_beta": 18, "bank_size": 8, "backbones": 6, "ablation_modules": 6,
                   "ablation_distill": 8, "ablation_calibration": 8, "ablation_generator": 10, "toy_live_vs_cached": 6,
                   "additions": 6}


def test_every_provided_sweep_validates_and_fits_two_cpus():
    paths = spec_paths(SWEEPS_DIR)
    assert {p.stem for p in paths} == set(EXPECTED_TRIALS)
    for path in paths:
        s = load_spec(path)
        assert s.name == path.stem and s.base == "toy_c2s" and len(s.seeds) == (3 if s.name.startswith("toy_") else 2)
        assert len(expand_trials(s)) == EXPECTED_TRIALS[path.stem], path
        check_cluster_fits(resources_needed(s), {"CPU": 2.0, "GPU": 0.0})  # CI's local Ray
        assert "Real data" in path.read_text().split("name:")[0], f"{path}: header must say how to run on real data"
    modules = {t.label: t.overrides for t in expand_trials(load_spec("ablation_modules"))}
    assert modules["baseline"]["distill.enabled"] is False and modules["baseline"]["latent.enabled"] is False
    kinds = [t.overrides["distill.kind"] for t in expand_trials(load_spec(SWEEPS_DIR / "ablation_distill.yaml"))]
    assert kinds[::2] == ["cosine", "l2", "froster", "infonce"]
    real = load_spec(SWEEPS_DIR / "ablation_modules.yaml",
                     ["base=coco_stuff164k_segformer_b4", "overrides.train.iters=40000"])
    assert load_config(real.base, expand_trials(real)[0].overrides).model.name == "segformer_b4"


def test_the_probe_specs_of_docs_table3_toy_validate():
    probes = Path(__file__).parents[2] / "tools" / "probes"
    schedule = load_spec(probes / "schedule_probe.yaml")
    trials = expand_trials(schedule)
    assert [t.overrides["distill.enabled"] for t in trials[::2]] == [False, True]
    assert all(t.overrides["train.iters"] == 900 for t in trials)
    nel = load_spec(probes / "latent_nel_probe.yaml")
    trials = expand_trials(nel)
    assert [t.overrides["latent.enabled"] for t in trials[::2]] == [False, True]
    assert all(t.overrides["loss.nel_mode"] == "present" for t in trials)
    for s in (schedule, nel):
        check_cluster_fits(resources_needed(s), {"CPU": 2.0, "GPU": 0.0})
