"""Typed settings of the C2S objective: one frozen dataclass per config section it reads, validated once.

    loss = LossSettings.from_config(cfg["loss"])     # SettingsError("loss.tau: expected a positive number, got -1")
    objective = C2SObjective(seen_text, loss=loss, distill=..., bank=..., latent=..., k_max=8)
    objective = build_objective(cfg, seen_text)      # c2s.method.objective: the same, from a whole config

A field is named as its config key (``loss.tau`` is ``LossSettings.tau``), so the dotted name a sweep varies
and the field it sets read the same. The values, and why any leaves the paper's, live in the configs
(``c2s/configs/_base_/method.py``): a field without a default must be in the section. The few defaults here
are ``None`` = "not read": the FROSTER projector's keys without ``distill.kind=froster``, the generator's
without ``latent.enabled``. No Ray and no config loader here: any mapping of sections will do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Self

from c2s.method.latent import CLS_TOKENS, INPUTS, KINDS
from c2s.method.losses import DISTILL_KINDS, DISTILL_SCHEDULES, GLOBAL_POOLS, IGNORE_INDEX, NEL_MODES

METHOD_CONFIG = "c2s/configs/_base_/method.py"
LOCAL_CANDIDATES = ("batch", "image")
SEEN_LOGITS = ("dot", "cos")


class SettingsError(ValueError):
    """A setting of the objective is missing or invalid; the message starts with its dotted config key."""


# ------------------------------------------------------------------------------ checks: (key, value) -> value
Check = Callable[[str, Any], Any]


def _fail(key: str, expected: str, value: Any) -> SettingsError:
    return SettingsError(f"{key}: expected {expected}, got {value!r}")


# The checks are small frozen dataclasses, not closures: a closure is built once, at import, where mutation
# testing (``make mutate``: mutmut switches mutants when a function is called) never reaches its body.
@dataclass(frozen=True)
class _Number:
    """A float (an int is taken, a bool is not) for which ``ok`` holds."""

    expected: str
    ok: Callable[[float], bool]

    def __call__(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.ok(float(value)):
            raise _fail(key, self.expected, value)
        return float(value)


@dataclass(frozen=True)
class _Whole:
    """An int (not a bool) >= ``minimum``."""

    minimum: int

    def __call__(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise _fail(key, f"a whole number >= {self.minimum}", value)
        return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


@dataclass(frozen=True)
class _OneOf:
    """One of ``choices``."""

    choices: tuple[str, ...]

    def __call__(self, key: str, value: Any) -> str:
        if value not in self.choices:
            raise _fail(key, f"one of {', '.join(self.choices)}", value)
        return value


@dataclass(frozen=True)
class _OrNone:
    """``None``, or a value that ``inner`` takes."""

    inner: Check

    def __call__(self, key: str, value: Any) -> Any:
        return None if value is None else self.inner(key, value)


_positive = _Number("a positive number", lambda v: v > 0)
_weight = _Number("a number >= 0", lambda v: v >= 0)
_finite = _Number("a finite number", math.isfinite)
_cosine = _Number("a cosine in [-1, 1] or None", lambda v: -1.0 <= v <= 1.0)
_fraction = _Number("a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)
_dropout = _Number("a probability in [0, 1)", lambda v: 0.0 <= v < 1.0)


def _key(check: Check) -> Any:
    """A required field, read from the config key of its name and checked by ``check``."""
    return field(metadata={"check": check})


def _key_if(check: Check) -> Any:
    """A field read only with some switches (see its class): ``None`` when it is not."""
    return field(default=None, metadata={"check": check})


# ------------------------------------------------------------------------------------------ the sections
class _Section:
    """A config section as a frozen dataclass: :meth:`from_config` reads it, ``__post_init__`` checks it."""

    section: ClassVar[str]

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> Self:
        """The settings of one config section (a mapping such as ``cfg["loss"]``); keys it does not read
        are left to their readers. :class:`SettingsError` names a missing or invalid key."""
        if not isinstance(values, Mapping):
            raise _fail(cls.section, "a section (a mapping of keys to values)", values)
        for f in fields(cls):
            if f.default is MISSING and f.name not in values:
                raise SettingsError(f"{cls.section}.{f.name}: missing (see {METHOD_CONFIG})")
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value is None and f.default is None):  # None: a switch-dependent key, not read
                object.__setattr__(self, f.name, f.metadata["check"](f"{self.section}.{f.name}", value))

    def _need(self, names: tuple[str, ...], because: str) -> None:
        for name in names:
            if getattr(self, name) is None:
                raise SettingsError(f"{self.section}.{name}: missing, needed with {because} (see {METHOD_CONFIG})")


@dataclass(frozen=True)
class LossSettings(_Section):
    """``loss``: the InfoNCE temperature, the logit scales and the weights of ``L`` (Eqs. 5-6)."""

    section: ClassVar[str] = "loss"
    tau: float = _key(_positive)  # InfoNCE temperature of L_g and L_l (Eqs. 2, 4)
    alpha: float = _key(_positive)  # scale of the seen logits X_s = alpha F^T A_s (and of the eval classifier)
    seen_logits: str = _key(_OneOf(SEEN_LOGITS))  # form of X_s: dot (the paper's F^T A_s) | cos
    beta: float = _key(_positive)  # scale of the latent logits X_u = beta cos(F, A'_u)
    w_global: float = _key(_weight)  # weight of L_g in L = w_g L_g + w_l L_l + w_p L_p
    w_local: float = _key(_weight)  # weight of L_l
    # over the run, the multiplier of w_global and w_local: constant (the paper's Eq. 6) | linear | cosine
    distill_schedule: str = _key(_OneOf(DISTILL_SCHEDULES))
    w_pixel: float = _key(_weight)  # weight of L_p
    use_nel: bool = _key(_flag)  # L_p = NEL + CE; false: CE only
    nel_mode: str = _key(_OneOf(NEL_MODES))  # zegclip (all class maps) | present (c2s's earlier reading)
    nel_focal_weight: float = _key(_weight)  # focal term of NEL
    nel_dice_weight: float = _key(_weight)  # dice term of NEL
    focal_alpha: float = _key(_fraction)  # sigmoid focal loss alpha
    focal_gamma: float = _key(_weight)  # sigmoid focal loss gamma
    ce_weight: float = _key(_weight)  # weight of the cross-entropy term of L_p
    compile: bool = _key(_flag)  # torch.compile the logits and the pixel losses
    learn_logit_bias: bool = _key(_flag)  # a learnable logit bias shared by all pixel logits
    logit_bias_init: float = _key(_finite)  # its initial value


@dataclass(frozen=True)
class DistillSettings(_Section):
    """``distill``: global and local CLIP-to-Seg distillation (Sec. 3.2; Tables 3-4)."""

    section: ClassVar[str] = "distill"
    enabled: bool = _key(_flag)  # L_g and L_l on/off (Table 3)
    kind: str = _key(_OneOf(DISTILL_KINDS))  # infonce (the paper's) | cosine | l2 | froster (Table 4)
    local_candidates: str = _key(_OneOf(LOCAL_CANDIDATES))  # negatives of the local InfoNCE: batch | image
    # teacher-token cosine at which a local candidate leaves the denominator; None: the paper's Eq. 4
    local_false_negative_cos: float | None = _key(_OrNone(_cosine))
    global_pool: str = _key(_OneOf(GLOBAL_POOLS))  # attention pooling of F_g: paper | centered | cosine
    global_attn_tau: float = _key(_positive)  # temperature of the cosine pool
    froster_hidden: int | None = _key_if(_Whole(1))  # FROSTER projector's hidden width (kind=froster)
    froster_alpha: float | None = _key_if(_finite)  # its residual scale (kind=froster)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind == "froster":
            self._need(("froster_hidden", "froster_alpha"), "distill.kind=froster")


@dataclass(frozen=True)
class BankSettings(_Section):
    """``bank``: the CLS token bank, the extra negatives of L_g (Sec. 3.2)."""

    section: ClassVar[str] = "bank"
    size: int = _key(_Whole(0))  # global CLS tokens kept (paper: 24); 0: batch negatives only


@dataclass(frozen=True)
class LatentSettings(_Section):
    """``latent``: the latent embedding generator (Sec. 3.3; Tables 5-6). Its keys are read when enabled."""

    section: ClassVar[str] = "latent"
    enabled: bool = _key(_flag)  # latent logits X_u and pseudo-mask supervision on/off (Table 3)
    kind: str | None = _key_if(_OneOf(KINDS))  # none | mlp | transformer
    inputs: str | None = _key_if(_OneOf(INPUTS))  # prototypes | cls_tokens | both
    cls_tokens: str | None = _key_if(_OneOf(CLS_TOKENS))  # the decoder's keys/values: global | local | both
    num_layers: int | None = _key_if(_Whole(1))  # transformer decoder layers
    num_heads: int | None = _key_if(_Whole(1))  # attention heads; must divide the embedding dim
    ffn_ratio: int | None = _key_if(_Whole(1))  # FFN width (decoder and MLP calibrator) = ffn_ratio * D
    dropout: float | None = _key_if(_dropout)  # dropout inside the decoder

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.enabled:
            return
        self._need(tuple(f.name for f in fields(self) if f.name != "enabled"), "latent.enabled=true")
        if self.kind == "none" and self.inputs == "both":
            raise SettingsError("latent.inputs: expected prototypes or cls_tokens with latent.kind=none (no "
                                "calibrator to combine two inputs), got 'both'")

    def generator_config(self) -> dict[str, Any]:
        """The mapping :class:`c2s.method.latent.LatentGenerator` reads."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def config_section(cfg: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``cfg[name]``, or :class:`SettingsError` saying which sections the objective reads."""
    if name not in cfg:
        raise SettingsError(f"{name}: section missing; the objective reads loss, distill, bank, latent and "
                            f"mining.k_max (see {METHOD_CONFIG})")
    return cfg[name]


def objective_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`c2s.method.objective.C2SObjective` read from a whole config:
    ``loss``, ``distill``, ``bank``, ``latent`` as settings and ``k_max`` (``mining.k_max``, checked by the
    objective against the number of seen classes)."""
    mining = config_section(cfg, "mining")
    if not isinstance(mining, Mapping) or "k_max" not in mining:
        raise SettingsError("mining.k_max: missing (see c2s/configs/_base_/teacher.py)")
    return {
        "loss": LossSettings.from_config(config_section(cfg, "loss")),
        "distill": DistillSettings.from_config(config_section(cfg, "distill")),
        "bank": BankSettings.from_config(config_section(cfg, "bank")),
        "latent": LatentSettings.from_config(config_section(cfg, "latent")),
        "k_max": _Whole(1)("mining.k_max", mining["k_max"]),
    }


def check_k_max(value: Any, num_seen: int, latent_enabled: bool) -> int:
    """``mining.k_max``: latent class slots per image; with latent classes on, their ids ``num_seen + j``
    stay below the ignore index."""
    k_max = _Whole(1)("mining.k_max", value)
    if latent_enabled and num_seen + k_max > IGNORE_INDEX:
        raise SettingsError(f"mining.k_max: {num_seen} seen classes + mining.k_max={k_max} latent ids collide "
                            f"with the ignore index {IGNORE_INDEX}")
    return k_max
