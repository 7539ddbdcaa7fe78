"""What values a hyperparameter may take: its type (that of its default) and its range, checked before any work.

Rules go by field name, so every learner that names a knob the field's way (``batch_size``, ``*_hidden_dims``,
``discount``) is checked the same way, including learners added later. A value outside its range would otherwise
fail deep inside JAX after the dataset is loaded (a width of -64), or train silently on nonsense (0 flow steps
integrate nothing, so FQL would distil clipped noise).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    def check(value: Any) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below

    return check


# (field-name pattern, what it must be, check); the first matching pattern applies.
RULES: list[tuple[str, str, Check]] = [
    (r".*_hidden_dims", "a non-empty list of integers >= 1",
     lambda v: len(v) > 0 and all(_positive_int(x) for x in v)),
    (r"(.*_)?batch_size|.*_steps|flow_steps|num_samples|actor_hidden_dim|actor_num_blocks|time_dim"
     r"|actor_freq|noise_critic_steps|actor_lr_decay_steps|backup_samples|ema_every|discretization_period|cql_n_actions",
     "an integer >= 1", _positive_int),
    (r"num_critics", "an integer >= 2 (an ensemble)", lambda v: v >= 2),
    (r"(.*_)?lr", "a number > 0", lambda v: v > 0),
    (r"discount", "a number in (0, 1]", _in(0, 1, low_open=True)),
    (r"(.*_)?tau", "a number in (0, 1]", _in(0, 1, low_open=True)),
    (r"expectile", "a number in (0, 1)", _in(0, 1, low_open=True, high_open=True)),
    (r".*dropout_rate", "a number in [0, 1)", _in(0, 1, high_open=True)),
    (r"init_temperature|noise_bound|max_weight|cql_temp|reward_scale", "a number > 0", lambda v: v > 0),
    (r"(.*_)?alpha(_.*)?|actor_noise(_clip)?|q_std_penalty|actor_weight_decay|actor_fc_scale|eta|grad_clip|rho|cql_weight",
     "a number >= 0", lambda v: v >= 0),
    (r"ema_start", "an integer >= 0", lambda v: isinstance(v, int) and v >= 0),
    (r"beta", "a number >= 0", lambda v: v >= 0),
    (r"policy_start_step", "an integer >= 0", lambda v: isinstance(v, int) and v >= 0),
    # Any finite number (checked for every field): target_entropy, reward_bias, cql_target_action_gap (β may be
    # negative in principle), cql_clip_diff_min/max (None: no clip).
]  # fmt: skip
_EXCEPTIONS = {  # 0: no pretraining, no warm-up
    name: ("an integer >= 0", lambda v: isinstance(v, int) and v >= 0) for name in ("base_steps", "warmup_steps")
}


def check_overrides(config_cls: type, values: Mapping[str, Any]) -> None:
    """Each override has the type of the field's default (an int where an int is expected, a list for sizes)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    for key, value in values.items():
        default = defaults.get(key, dataclasses.MISSING)
        if default is dataclasses.MISSING or default is None:
            continue  # unknown names are reported by make_config; None defaults take several types
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, list | tuple)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            expected = {tuple: "a list", int: "an integer", float: "a number", bool: "true or false", str: "a string"}
            expected = expected.get(type(default), f"a {type(default).__name__}")
            raise ValueError(f"{key} must be {expected} (default {default!r}), got {value!r}")


def check_ranges(config: Any) -> None:
    """Every field of a built config is finite and within its rule's range; ValueError naming the first that is not."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or isinstance(value, bool | str):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field.name} must be a finite number, got {value!r}")
        rule = _EXCEPTIONS.get(field.name) or next(
            ((what, check) for pattern, what, check in RULES if re.fullmatch(pattern, field.name)), None
        )
        if rule is None:
            continue
        what, check = rule
        try:
            ok = bool(check(value))
        except TypeError:  # e.g. a list of strings compared with numbers
            ok = False
        if not ok:
            shown = list(value) if isinstance(value, tuple) else value
            raise ValueError(f"{field.name} must be {what}, got {shown!r}")
