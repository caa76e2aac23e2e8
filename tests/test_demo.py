"""``c2s demo``'s two runs: the demo's learning rate and mining over the toy configs, the user's overrides last
(docs/demo.md#the-claim-over-toy-clips-and-seeds)."""

from c2s.config import load_config
from c2s.demo import demo_configs


def _schedule(cfg) -> tuple:
    return cfg.train.iters, cfg.optim.lr, cfg.optim.warmup_iters, cfg.mining.edges


def test_both_runs_train_at_the_demos_learning_rate_and_the_configs_keep_theirs():
    configs = demo_configs([], num_cpus=2)
    assert set(configs) == {"baseline", "c2s"}
    assert {name: _schedule(cfg) for name, cfg in configs.items()} == {
        "baseline": (300, 1.2e-3, 50, "labels"),
        "c2s": (300, 1.2e-3, 50, "labels"),
    }
    # the results book's toy runs: toy_c2s and toy_baseline as written
    assert _schedule(load_config("toy_c2s")) == _schedule(load_config("toy_baseline")) == (300, 6e-4, 50, "tokens")


def test_only_the_baseline_gets_every_cpu_and_the_users_overrides_win():
    configs = demo_configs(["optim.lr=6e-4", "mining.edges=tokens", "train.seed=3"], num_cpus=4)
    assert [_schedule(configs[name]) for name in ("baseline", "c2s")] == [(300, 6e-4, 50, "tokens")] * 2
    assert [configs[name].train.seed for name in ("baseline", "c2s")] == [3, 3]
    assert configs["baseline"].train.torch_threads == 4
    assert configs["c2s"].train.torch_threads == load_config("toy_c2s").train.torch_threads
    assert configs["baseline"].distill.enabled is False and configs["c2s"].distill.enabled is True
