import pytest

from c2s.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    flatten,
    from_dict,
    load_config,
    parse_value,
    to_dict,
    yaml_load,
)


def test_base_inheritance_and_paper_defaults():
    cfg = load_config("coco_stuff164k_segformer_b4")
    assert cfg.bank.size == 24  # paper Sec. 4
    assert cfg.train.iters == 80000  # COCO-Stuff iterations
    assert cfg.data.dataset == "coco_stuff164k"
    assert cfg.model.name == "segformer_b4"
    assert cfg.optim.weight_decay == 0.01
    assert load_config("voc12_segnext_b").train.iters == 20000
    assert load_config("context59_setr_b_naive").train.iters == 40000


def test_child_config_overrides_its_base():
    base, child = load_config("toy_c2s"), load_config("toy_baseline")
    assert base.distill.enabled is True and child.distill.enabled is False
    assert child.distill.kind == base.distill.kind  # untouched keys are inherited


def test_dotted_overrides_and_types():
    cfg = load_config("toy_c2s", ["loss.tau=0.05", "bank.size=48", "mining.window_sizes=[2, 3]",
                                  "teacher.checkpoint=/x.pt", "distill.enabled=false"])
    assert cfg.loss.tau == 0.05 and cfg.bank.size == 48
    assert tuple(cfg.mining.window_sizes) == (2, 3)
    assert cfg.teacher.checkpoint == "/x.pt" and cfg.distill.enabled is False
    assert isinstance(load_config("toy_c2s", ["loss.tau=1"]).loss.tau, float)  # int accepted for float


def test_exponent_floats_without_a_dot_are_floats():
    # YAML 1.1 (PyYAML) reads "2e-3" as a string; overrides and sweep specs must read it as a number
    assert load_config("toy_c2s", ["optim.lr=2e-3"]).optim.lr == pytest.approx(0.002)
    assert parse_value("1E5") == 100000.0 and parse_value("-3.0e+2") == -300.0 and parse_value(".5") == 0.5
    assert parse_value("[1e-4, 2]") == [0.0001, 2] and parse_value("3") == 3 and parse_value("1e") == "1e"
    assert yaml_load("space: {optim.lr: {loguniform: [1e-5, 1e-3]}}") == {
        "space": {"optim.lr": {"loguniform": [1e-5, 1e-3]}}}


def test_misspelt_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"'loss.tua'.*loss\.tau"):
        load_config("toy_c2s", ["loss.tua=0.1"])
    with pytest.raises(ConfigError, match=r"'bank.sise'.*bank\.size"):
        apply_overrides(load_config("toy_c2s"), {"bank.sise": 3})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'bank.size' expects int.*float 2.5"):
        load_config("toy_c2s", ["bank.size=2.5"])
    with pytest.raises(ConfigError, match=r"'distill.enabled' expects bool"):
        load_config("toy_c2s", ["distill.enabled=3"])


def test_unknown_config_name_and_malformed_override():
    with pytest.raises(ConfigError, match="toy_c2z.*toy_c2s"):
        load_config("toy_c2z")
    with pytest.raises(ConfigError, match="key=value"):
        load_config("toy_c2s", ["loss.tau"])


def test_round_trip_and_hash():
    cfg = load_config("toy_c2s")
    again = from_dict(to_dict(cfg))
    assert flatten(to_dict(again)) == flatten(to_dict(cfg))
    assert config_hash(cfg) == config_hash(again)
    assert config_hash(cfg) != config_hash(apply_overrides(cfg, {"loss.tau": 0.5}))
    assert config_hash(cfg, ["teacher.arch"]) == config_hash(apply_overrides(cfg, {"loss.tau": 0.5}), ["teacher.arch"])
