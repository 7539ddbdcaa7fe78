"""One interface for every learner: look an algorithm up by name and build its config from the presets."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flowsteer.algorithms import (
    bc,
    bfn,
    cac,
    calql,
    dsrl,
    dsrl_na,
    dsrl_sac,
    fawac,
    fbrac,
    flow_bc,
    fql,
    idql,
    ifql,
    iql,
    presets,
    rebrac,
    rlpd,
    srpo,
)
from flowsteer.algorithms.columns import EpisodeColumn
from flowsteer.algorithms.hyperparameters import check_overrides, check_ranges
from flowsteer.algorithms.steering import ExternalBase, Steering


@dataclass(frozen=True)
class Algorithm:
    """A learner: its config class and its three pure functions; `steering` is set only for the learners that
    steer a pretrained base policy (DSRL), which need more of the run loop (see flowsteer.algorithms.steering)."""

    name: str
    config_cls: type
    init: Callable[..., Any]  # (config, obs_dim, act_dim, key) -> TrainState
    update: Callable[..., Any]  # (config, state, batch) -> (TrainState, metrics)
    act: Callable[..., Any]  # (config, state, observations, key, deterministic) -> actions
    # (config, state) -> (flow network, params): the BC flow this learner trained, which a steering run can load
    # as its base (`base_run`); None for learners without a BC flow.
    base_policy: Callable[..., Any] | None = None
    # Metrics its update computes on some steps only and logs as NaN on the others (ReBRAC's actor metrics on its
    # critic-only steps): a NaN there is not divergence (flowsteer.workers.learner).
    intermittent_metrics: tuple[str, ...] = ()
    steering: Steering | None = None
    # (config, offline_steps, online_steps) -> None, raising ValueError naming the problem and the fix for a run
    # schedule the learner cannot use (RLPD has no offline phase; DSRL needs its base); None: any schedule.
    check_run: Callable[[Any, int, int], None] | None = None
    # config -> whether online batches are drawn half from the dataset and half from the online transitions
    # (flowsteer.algorithms.training.balanced_batch); None: uniform over the whole replay buffer.
    balanced_sampling: Callable[[Any], bool] | None = None
    # Data columns computed from whole episodes that the update reads (Cal-QL's Monte-Carlo returns): the learner
    # adds them to the dataset and writes them online when an episode ends (flowsteer.algorithms.columns).
    episode_columns: tuple[EpisodeColumn, ...] = ()


def _algorithm(name: str, module: ModuleType, config_cls: type, **extra: Any) -> Algorithm:
    return Algorithm(name, config_cls, module.init, module.update, module.act, **extra)


ALGORITHMS: dict[str, Algorithm] = {
    "bc": _algorithm("bc", bc, bc.BCConfig),
    "iql": _algorithm("iql", iql, iql.IQLConfig),
    "rebrac": _algorithm("rebrac", rebrac, rebrac.ReBRACConfig, intermittent_metrics=rebrac.ACTOR_METRICS),
    "ifql": _algorithm("ifql", ifql, ifql.IFQLConfig, base_policy=ifql.base_policy),
    "idql": _algorithm("idql", idql, idql.IDQLConfig),
    "fql": _algorithm("fql", fql, fql.FQLConfig, base_policy=fql.base_policy),
    "flow_bc": _algorithm("flow_bc", flow_bc, flow_bc.FlowBCConfig, base_policy=flow_bc.base_policy),
    "dsrl_na": _algorithm(
        "dsrl_na",
        dsrl_na,
        dsrl_na.DSRLNAConfig,
        base_policy=dsrl_na.base_policy,
        check_run=dsrl_na.check_run,
        steering=Steering(
            base_run=dsrl.base_run,
            with_base_policy=dsrl_na.with_base_policy,
            pretrain_update=dsrl_na.pretrain_update,
            pretrain_steps=dsrl_na.pretrain_steps,
        ),
    ),
    "dsrl_sac": _algorithm(
        "dsrl_sac",
        dsrl_sac,
        dsrl_sac.DSRLSACConfig,
        base_policy=dsrl_sac.base_policy,
        check_run=dsrl_sac.check_run,
        steering=Steering(
            base_run=dsrl.base_run,
            with_base_policy=dsrl_sac.with_base_policy,
            pretrain_update=dsrl_sac.pretrain_update,
            pretrain_steps=dsrl_sac.pretrain_steps,
            explore=dsrl_sac.explore,
            online_columns=dsrl_sac.ONLINE_COLUMNS,
            replay_dataset=False,  # dataset transitions carry no noise labels
            warmup_steps=dsrl_sac.warmup_steps,
            warmup_explore=dsrl_sac.warmup_explore,
            external=ExternalBase(
                base_policy=dsrl_sac.external_base,
                act_noise=dsrl_sac.act_noise,
                explore_noise=dsrl_sac.explore_noise,
                warmup_noise=dsrl_sac.warmup_noise,
            ),
        ),
    ),
    "cac": _algorithm("cac", cac, cac.CACConfig),
    "srpo": _algorithm("srpo", srpo, srpo.SRPOConfig, intermittent_metrics=srpo.POLICY_METRICS),
    "fawac": _algorithm("fawac", fawac, fawac.FAWACConfig, base_policy=fawac.base_policy),
    "fbrac": _algorithm("fbrac", fbrac, fbrac.FBRACConfig, base_policy=fbrac.base_policy),
    "rlpd": _algorithm(
        "rlpd", rlpd, rlpd.RLPDConfig, check_run=rlpd.check_run, balanced_sampling=rlpd.balanced_sampling
    ),
    "calql": _algorithm(
        "calql",
        calql,
        calql.CalQLConfig,
        balanced_sampling=calql.balanced_sampling,
        episode_columns=calql.EPISODE_COLUMNS,
    ),
    "bfn": _algorithm("bfn", bfn, bfn.BFNConfig, base_policy=bfn.base_policy),
}


def check_run(algo: str, config: Any, offline_steps: int, online_steps: int) -> None:
    """ValueError naming the problem when `algo` cannot use this run schedule (a steering learner whose base would
    never be trained, RLPD with an offline phase); nothing for learners that declare no run check."""
    check = get_algorithm(algo).check_run
    if check is not None:
        check(config, offline_steps, online_steps)


def warmup_steps(algo: str, config: Any) -> int:
    """How many of the first online steps collect with the learner's warm-up policy and run no update (DSRL-SAC's
    base-policy rollouts); 0 for every other learner."""
    steering = get_algorithm(algo).steering
    if steering is None or steering.warmup_steps is None:
        return 0
    return steering.warmup_steps(config)


def _unknown(kind: str, names: list[str], valid: list[str]) -> ValueError:
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, valid, n=3)
        hints.append(f"{name!r}" + (f" (did you mean {close}?)" if close else ""))
    return ValueError(f"unknown {kind} {', '.join(hints)}; valid: {valid}")


def get_algorithm(name: str) -> Algorithm:
    """The learner called `name`; a ValueError lists the valid names otherwise."""
    if name not in ALGORITHMS:
        raise _unknown("algorithm", [name], list(ALGORITHMS))
    return ALGORITHMS[name]


# The config field a learner that can act in chunks of H actions declares (Q-chunking, Li et al. 2025;
# docs/chunking.md). It is set from the run (RunSpec.action_chunk), never as a hyperparameter: the data, the
# rollouts and the step counting change with it too.
CHUNK_FIELD = "action_chunk"


def chunk_capable(algo: str) -> bool:
    """Whether `algo` can act in chunks of H > 1 actions (its config has the `action_chunk` field)."""
    return CHUNK_FIELD in hyperparameter_names(algo)


def chunk_capable_algorithms() -> list[str]:
    return [name for name in ALGORITHMS if chunk_capable(name)]


def check_action_chunk(algo: str, action_chunk: int) -> None:
    """ValueError, before any work, when `algo` cannot act in chunks of `action_chunk` actions."""
    if action_chunk < 1:
        raise ValueError(f"action_chunk must be 1 or more, got {action_chunk}.")
    if action_chunk > 1 and not chunk_capable(algo):
        raise ValueError(
            f"{algo} cannot act in chunks (action_chunk {action_chunk}): flowsteer's {algo} trains and acts on "
            f"single steps. Use action_chunk 1 with {algo}, or one of the learners that chunk: "
            f"{', '.join(chunk_capable_algorithms())} (docs/chunking.md)."
        )


def hyperparameter_names(algo: str) -> list[str]:
    """The fields of `algo`'s config, in declaration order."""
    return [f.name for f in dataclasses.fields(get_algorithm(algo).config_cls)]


# Learning-rate schedules that a reference sizes to its whole run (IDQL's cosine decay: decay_steps = max_steps).
# A run fills them with its own number of updates (`updates`) unless the presets or the user set them, so a 1M-step
# run decays over 1M steps, not over the reference's 3M (docs/algorithms.md#idql).
RUN_LENGTH_FIELD = re.compile(r"(.*_)?lr_decay_steps")


def make_config(
    algo: str,
    task: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    setting: str = "offline",
    updates: int | None = None,
    action_chunk: int = 1,
) -> Any:
    """Defaults, then the paper's settings for `task` (if given), then `overrides`; ValueError naming the field
    for an unknown name, a wrong type or a value out of range. `updates` (the run's number of updates) sets each
    learning-rate horizon (RUN_LENGTH_FIELD) that neither the presets nor `overrides` set. `action_chunk` (H, the
    run's) goes into the config of learners that can act in chunks; others refuse H > 1."""
    alg = get_algorithm(algo)
    names = hyperparameter_names(algo)
    overrides = dict(overrides or {})
    if CHUNK_FIELD in overrides:
        raise ValueError(
            f"{CHUNK_FIELD} is a run setting, not a hyperparameter: it changes the data and the rollouts too. Set "
            f"it on the run (--action-chunk H, or action_chunk in the run section of a sweep file)."
        )
    check_action_chunk(algo, action_chunk)
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise _unknown(f"hyperparameter(s) for {algo}:", unknown, names)
    check_overrides(alg.config_cls, overrides)
    values = presets.task_hyperparameters(algo, task, setting) if task is not None else {}
    values = {k: v for k, v in values.items() if k in names} | overrides
    if updates is not None and updates > 0:
        values |= {k: updates for k in names if RUN_LENGTH_FIELD.fullmatch(k) and k not in values}
    # YAML and JSON give lists; the configs are frozen and hashable, so sizes are tuples.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if CHUNK_FIELD in names:
        values[CHUNK_FIELD] = action_chunk
    config = alg.config_cls(**values)
    check_ranges(config)
    return config
