"""Flow Q-learning (FQL; Park, Li, Levine, ICML 2025): a BC flow policy distilled into a one-step policy
that maximises Q. FQL paper Secs. 3-4, App. B. Follows seohongpark/fql agents/fql.py;
docs/algorithms.md#fql."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import bootstrap_discount, td_loss
from flowsteer.algorithms.flow import euler_sample
from flowsteer.algorithms.flow_bc import bc_flow_loss
from flowsteer.algorithms.networks import Critic, VectorField
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class FQLConfig:
    """FQL hyperparameters; defaults are the reference's `get_config()`.

    Reference: seohongpark/fql agents/fql.py at 719d044; with `action_chunk` H > 1, QC-FQL of Q-chunking
    (ColinQiyangLi/qc agents/acfql.py at 48283b4, `actor_type='distill-ddpg'`). Intentional divergences: none in
    the objective; frozen inputs are explicit stop-gradients; no image encoder, state only (docs/algorithms.md#fql).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over every trained network
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # BC flow and one-step policy MLPs
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the two policy networks
    discount: float = 0.99  # γ (0.995 on antmaze-giant, humanoidmaze, antsoccer)
    tau: float = 0.005  # Polyak rate of the target critic
    q_agg: Literal["mean", "min"] = "mean"  # aggregation of the 2 target heads (min: antmaze-large/giant)
    alpha: float = 10.0  # distillation coefficient α, tuned per environment
    flow_steps: int = 10  # Euler steps of the BC flow
    normalize_q_loss: bool = False  # scale the Q loss by 1/mean|Q| (README advice for new environments)
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)

    def __post_init__(self) -> None:
        if self.q_agg not in ("mean", "min"):
            raise ValueError(f"q_agg must be 'mean' or 'min', got {self.q_agg!r}")


def _critic(config: FQLConfig) -> Critic:
    return Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)


def _policy_net(config: FQLConfig, act_dim: int) -> VectorField:
    """The architecture shared by the BC flow v_θ(s, x, t) and the one-step policy μ_ω(s, z)."""
    return VectorField(config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm)


def _optimizer(config: FQLConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr)


def init(config: FQLConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise critic, BC flow and one-step policy; the target critic starts as a copy of the critic."""
    rng, critic_key, flow_key, onestep_key = jax.random.split(key, 4)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    policy_net = _policy_net(config, act_dim)
    params = {
        "critic": _critic(config).init(critic_key, obs, act),
        "bc_flow": policy_net.init(flow_key, obs, act, t),
        "onestep_policy": policy_net.init(onestep_key, obs, act),
    }
    target_params = {"critic": params["critic"]}
    return new_state(params, target_params, _optimizer(config).init(params), rng, act_dim)


def onestep_actions(config: FQLConfig, params: dict, observations: jax.Array, key: jax.Array, act_dim: int):
    """a = clip(μ_ω(s, z), −1, 1) with z ~ N(0, I): how FQL acts."""
    noise = jax.random.normal(key, (*observations.shape[:-1], act_dim))
    actions = _policy_net(config, act_dim).apply(params["onestep_policy"], observations, noise)
    return jnp.clip(actions, -1.0, 1.0)


def flow_actions(config: FQLConfig, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
    """μ_θ(s, z): Euler integration of the BC flow from z, clipped to [−1, 1]."""
    net = _policy_net(config, noise.shape[-1])
    return euler_sample(lambda x, t: net.apply(params["bc_flow"], observations, x, t), noise, config.flow_steps)


def critic_loss(
    config: FQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """TD loss with a′ from the (frozen) one-step policy and the mean or min of the target heads; over chunks,
    γ^H and the `valid` mask (docs/chunking.md)."""
    act_dim = batch["actions"].shape[-1]
    # docs/pitfalls.md pitfall 1: next-action sampling is frozen.
    frozen = jax.lax.stop_gradient(params)
    next_actions = onestep_actions(config, frozen, batch["next_observations"], key, act_dim)
    next_qs = _critic(config).apply(target_params["critic"], batch["next_observations"], next_actions)
    next_q = next_qs.min(axis=0) if config.q_agg == "min" else next_qs.mean(axis=0)
    discount = bootstrap_discount(config.discount, config.action_chunk)
    target_q = batch["rewards"] + discount * batch["masks"] * next_q
    q = _critic(config).apply(params["critic"], batch["observations"], batch["actions"])
    loss = td_loss(q, target_q, batch)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_max": q.max(), "q_min": q.min()}


def actor_loss(config: FQLConfig, params: dict, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
    """BC flow loss + α·distillation loss + Q loss (docs/algorithms.md#fql, items 2-4). Over chunks, only the BC
    flow loss is masked, per position; distillation and Q loss see every sample (ColinQiyangLi/qc
    agents/acfql.py, actor_loss)."""
    obs, actions = batch["observations"], batch["actions"]
    act_dim = actions.shape[-1]
    flow_key, noise_key, mse_key = jax.random.split(key, 3)
    net = _policy_net(config, act_dim)
    # Gradients reach the BC flow only through this loss, and the one-step policy only through the two below.
    frozen = jax.lax.stop_gradient(params)

    flow_loss = bc_flow_loss(net, params["bc_flow"], batch, flow_key)

    noise = jax.random.normal(noise_key, actions.shape)
    # docs/pitfalls.md pitfall 1: the distillation target μ_θ(s, z) is frozen (the BC flow is not pulled toward
    # the policy).
    target_actions = flow_actions(config, frozen, obs, noise)
    policy_actions = net.apply(params["onestep_policy"], obs, noise)
    distill_loss = jnp.mean((policy_actions - target_actions) ** 2)

    # docs/pitfalls.md pitfalls 3 and 1: clip before Q; the critic is frozen, only the actions carry gradient.
    qs = _critic(config).apply(frozen["critic"], obs, jnp.clip(policy_actions, -1.0, 1.0))
    q = qs.mean(axis=0)
    q_loss = -q.mean()
    if config.normalize_q_loss:
        q_loss = q_loss * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())

    loss = flow_loss + config.alpha * distill_loss + q_loss
    sampled = onestep_actions(config, frozen, obs, mse_key, act_dim)
    return loss, {
        "actor_loss": loss,
        "bc_flow_loss": flow_loss,
        "distill_loss": distill_loss,
        "q_loss": q_loss,
        "q": q.mean(),
        "mse": jnp.mean((sampled - actions) ** 2),
    }


def total_loss(
    config: FQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Critic loss + actor loss, differentiated once w.r.t. all `params` (one Adam step, as the reference)."""
    critic_key, actor_key = jax.random.split(key)
    c_loss, c_info = critic_loss(config, params, target_params, batch, critic_key)
    a_loss, a_info = actor_loss(config, params, batch, actor_key)
    metrics = {f"critic/{k}": v for k, v in c_info.items()} | {f"actor/{k}": v for k, v in a_info.items()}
    return c_loss + a_loss, metrics


def update(config: FQLConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the summed loss, then Polyak on the critic."""
    return summed_loss_update(
        _optimizer(config),
        state,
        lambda p, key: total_loss(config, p, state.target_params, batch, key),
        targets=("critic",),
        tau=config.tau,
    )


def act(
    config: FQLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Sample from the one-step policy. `deterministic` is ignored: the reference evaluates with z ~ N(0, I)
    too (its `temperature` argument is unused; docs/pitfalls.md pitfall 2)."""
    del deterministic
    return onestep_actions(config, state.params, observations, key, state.act_dim)


def base_policy(config: FQLConfig, state: TrainState) -> tuple[VectorField, dict]:
    """FQL's BC flow, lent to DSRL as its base policy (`base_run`): (network, parameters)."""
    return _policy_net(config, state.act_dim), state.params["bc_flow"]
