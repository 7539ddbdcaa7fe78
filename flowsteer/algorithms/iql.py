"""Implicit Q-learning (IQL; Kostrikov et al. 2022) with an AWR actor, as in seohongpark/fql agents/iql.py
(IQL paper Sec. 4; docs/algorithms.md#iql). The value and critic losses here are reused by IFQL and IDQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import td_loss
from flowsteer.algorithms.networks import Critic, GaussianActor, gaussian_actions, gaussian_log_prob
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class IQLConfig:
    """IQL hyperparameters; defaults are the reference's `get_config()`.

    Reference: seohongpark/fql agents/iql.py at 719d044. Intentional divergence: no image encoder
    (docs/algorithms.md#iql).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over value, critic and actor
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # policy MLP ([256]×4 on state manipulation)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # V and Q MLPs ([256]×4 on state manipulation)
    layer_norm: bool = True  # LayerNorm in V and Q
    actor_layer_norm: bool = False  # LayerNorm in the policy
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critic
    expectile: float = 0.9  # expectile κ of the value regression
    actor_loss: Literal["awr", "ddpgbc"] = "awr"  # AWR (paper) or DDPG+BC
    alpha: float = 10.0  # AWR inverse temperature, or the BC coefficient in DDPG+BC
    const_std: bool = True  # unit std instead of a learned state-independent log-std

    def __post_init__(self) -> None:
        if self.actor_loss not in ("awr", "ddpgbc"):
            raise ValueError(f"actor_loss must be 'awr' or 'ddpgbc', got {self.actor_loss!r}")


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """|κ − 1(diff < 0)|·diff²: weight κ where Q ≥ V, 1 − κ below."""
    return jnp.where(diff >= 0, expectile, 1 - expectile) * diff**2


def value_loss(
    critic: Critic, value: Critic, params: dict, target_params: dict, batch: Batch, expectile: float
) -> tuple[jax.Array, Metrics]:
    """Expectile regression of V(s) onto min of the two *target* critic heads at dataset actions."""
    # The regression target comes from the target critic, never from the trained one (seohongpark/fql agents/iql.py).
    target_critic = jax.lax.stop_gradient(target_params["critic"])
    q = critic.apply(target_critic, batch["observations"], batch["actions"]).min(0)
    v = value.apply(params["value"], batch["observations"])
    loss = expectile_loss(q - v, expectile).mean()
    return loss, {"value_loss": loss, "v_mean": v.mean(), "v_max": v.max(), "v_min": v.min()}


def critic_loss(
    critic: Critic, value: Critic, params: dict, batch: Batch, discount: float, sum_heads: bool = True
) -> tuple[jax.Array, Metrics]:
    """TD regression of both heads onto r + γ·mask·V(s′); V is frozen (docs/pitfalls.md pitfall 1).

    The FQL codebase sums the two heads' squared errors (`sum_heads`); IDQL averages them.
    """
    next_v = value.apply(jax.lax.stop_gradient(params["value"]), batch["next_observations"])
    target_q = batch["rewards"] + discount * batch["masks"] * next_v
    qs = critic.apply(params["critic"], batch["observations"], batch["actions"])
    loss = td_loss(qs, target_q, batch, sum_heads)  # valid-masked in IFQL's chunk batches (docs/chunking.md)
    return loss, {
        "critic_loss": loss,
        "q_mean": target_q.mean(),
        "q_max": target_q.max(),
        "q_min": target_q.min(),
    }


def _networks(config: IQLConfig, act_dim: int) -> tuple[Critic, Critic, GaussianActor]:
    critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
    value = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=1)
    actor = GaussianActor(
        config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm, const_std=config.const_std
    )
    return critic, value, actor


def init(config: IQLConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise V, Q (2 heads) and the Gaussian actor; the target critic starts as a copy of Q."""
    critic, value, actor = _networks(config, act_dim)
    rng, critic_key, value_key, actor_key = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    params = {
        "critic": critic.init(critic_key, obs, act),
        "value": value.init(value_key, obs),
        "actor": actor.init(actor_key, obs),
    }
    return new_state(params, {"critic": params["critic"]}, optax.adam(config.lr).init(params), rng, act_dim)


def actor_loss(
    config: IQLConfig, params: dict, batch: Batch, key: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """AWR: −mean(min(exp(α·(Q − V)), 100)·log π(a|s)) with the online Q and V frozen (IQL paper Sec. 4).
    DDPG+BC: −Q(s, â)/mean|Q| − α·log π(a|s), with â the clipped mean, or with a learned std (const_std=False) a
    reparameterised policy sample drawn with `key`, as the reference does."""
    critic, value, actor = _networks(config, batch["actions"].shape[-1])
    obs, actions = batch["observations"], batch["actions"]
    frozen = jax.lax.stop_gradient(params)
    mean, log_std = actor.apply(params["actor"], obs)
    log_prob = gaussian_log_prob(mean, log_std, actions)
    mse = jnp.mean((mean - actions) ** 2)
    if config.actor_loss == "awr":
        adv = critic.apply(frozen["critic"], obs, actions).min(0) - value.apply(frozen["value"], obs)
        weight = jnp.minimum(jnp.exp(config.alpha * adv), 100.0)
        loss = -(weight * log_prob).mean()
        return loss, {"actor_loss": loss, "adv": adv.mean(), "bc_log_prob": log_prob.mean(), "mse": mse}
    # DDPG+BC: the Q gradient flows through the (clipped) action into the actor only.
    if config.const_std:
        q_actions = jnp.clip(mean, -1.0, 1.0)
    else:
        if key is None:
            raise ValueError("IQL's DDPG+BC with a learned std (const_std=False) samples its action: pass a key")
        q_actions = jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)
    q = critic.apply(frozen["critic"], obs, q_actions).min(0)
    q_loss = -q.mean() / jax.lax.stop_gradient(jnp.abs(q).mean())
    bc_loss = -(config.alpha * log_prob).mean()
    loss = q_loss + bc_loss
    return loss, {"actor_loss": loss, "q_loss": q_loss, "bc_loss": bc_loss, "q_mean": q.mean(), "mse": mse}


def total_loss(
    config: IQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """Value + critic + actor losses, summed for one Adam step as in the reference; `key` draws the actor's
    sample where its loss takes one."""
    critic, value, _ = _networks(config, batch["actions"].shape[-1])
    v_loss, v_info = value_loss(critic, value, params, target_params, batch, config.expectile)
    c_loss, c_info = critic_loss(critic, value, params, batch, config.discount)
    a_loss, a_info = actor_loss(config, params, batch, key)
    metrics = {f"value/{k}": v for k, v in v_info.items()} | {f"critic/{k}": v for k, v in c_info.items()}
    return v_loss + c_loss + a_loss, metrics | {f"actor/{k}": v for k, v in a_info.items()}


def update(config: IQLConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the summed loss, then Polyak on the critic."""
    return summed_loss_update(
        optax.adam(config.lr),
        state,
        lambda p, key: total_loss(config, p, state.target_params, batch, key),
        targets=("critic",),
        tau=config.tau,
    )


def act(
    config: IQLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """The mean action when deterministic (evaluation, temperature 0), else a sample; clipped to [−1, 1]."""
    _, _, actor = _networks(config, state.act_dim)
    mean, log_std = actor.apply(state.params["actor"], observations)
    return gaussian_actions(mean, log_std, key, deterministic)
