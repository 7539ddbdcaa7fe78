"""What a learner that steers a pretrained base policy needs from the run loop, beyond init / update / act.

Only the DSRL learners steer (Wagenmaker et al. 2025, arXiv 2506.15799; docs/algorithms.md#dsrl-na,
docs/algorithms.md#dsrl-sac): they learn a policy over the noise that a frozen BC flow policy (the base) decodes
into actions. That changes four things for the run loop, and each is a field here, so a reader sees which
learners are special and why:

- the base comes first: it is pretrained by flow BC during the first updates of the run (`pretrain_update`,
  `pretrain_steps`), or loaded from an earlier run (`base_run`, installed by `with_base_policy`);
- a run schedule may not suit the learner, e.g. a base still pretraining when the online phase starts (its
  `Algorithm.check_run`, a field every learner may set);
- online collection may store more than the action (`explore`, `online_columns`): DSRL-SAC stores the noise;
- the online replay buffer may not start with the dataset (`replay_dataset`): dataset transitions carry no noise;
- the online phase may open with a warm-up (`warmup_steps`, `warmup_explore`): DSRL-SAC first fills its buffer
  with rollouts of the base policy and starts updating after them, as the official code does;
- the base may live outside JAX (`external`): DSRL-SAC steering a torch policy file only chooses noise, and the
  rollout code decodes it with the base (docs/base-policies.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowsteer.algorithms.training import UpdateFn


@dataclass(frozen=True)
class ExternalBase:
    """How a learner steers a base that lives outside JAX: it names the file, and chooses noise that the rollout
    code decodes with that base (flowsteer.workers.rollout). Each function mirrors one of the learner's own:
    `act_noise` ~ `act`, `explore_noise` ~ `Steering.explore`, `warmup_noise` ~ `Steering.warmup_explore`."""

    # config -> the base policy file this config steers, or None (then the learner decodes in JAX as usual).
    base_policy: Callable[[Any], str | None]
    # (config, state, observations, key, deterministic) -> noise.
    act_noise: Callable[..., Any]
    # (config, state, observations, key) -> noise, stored in the replay column 'noises'.
    explore_noise: Callable[..., Any]
    warmup_noise: Callable[..., Any]


@dataclass(frozen=True)
class Steering:
    """The steering half of a learner's contract with the run loop (see the module docstring)."""

    # config -> run directory of a finished run whose BC flow is the base (loaded before any work), or None.
    base_run: Callable[[Any], str | None]
    # (config, state, network, params) -> state: install a pretrained base (the one `base_run` names).
    with_base_policy: Callable[..., Any]
    # (config, state, batch) -> (state, metrics): one flow-BC step of the base on a dataset batch.
    pretrain_update: UpdateFn
    # config -> how many of the run's first updates are `pretrain_update`s; None: every offline update.
    pretrain_steps: Callable[[Any], int | None]
    # Online collection (config, state, observations, key) -> (actions, {column: values}); None: act at temperature 1.
    explore: Callable[..., Any] | None = None
    online_columns: tuple[str, ...] = ()  # replay columns (shaped like actions) that `explore` returns
    replay_dataset: bool = True  # the online replay buffer starts with the offline dataset
    # config -> how many of the first online steps collect with `warmup_explore` and run no update; None: none.
    warmup_steps: Callable[[Any], int] | None = None
    # Warm-up collection (config, state, observations, key) -> (actions, {column: values}), shaped as `explore`.
    warmup_explore: Callable[..., Any] | None = None
    external: ExternalBase | None = None  # a base outside JAX, when the learner can steer one (DSRL-SAC)


def external_base(steering: Steering | None, config: Any) -> str | None:
    """The base policy file a learner's config steers outside JAX, or None."""
    if steering is None or steering.external is None:
        return None
    return steering.external.base_policy(config)
