"""IFQL, the flow version of IDQL from the FQL paper: IQL's value and critic, a BC flow policy, and
best-of-N action selection by Q (FQL paper App. E.2). Follows seohongpark/fql agents/ifql.py;
docs/algorithms.md#ifql."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms import iql
from flowsteer.algorithms.chunks import bootstrap_discount, sample_weights
from flowsteer.algorithms.flow import euler_sample, flow_matching_loss
from flowsteer.algorithms.networks import Critic, VectorField
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class IFQLConfig:
    """IFQL hyperparameters; defaults are the reference's `get_config()`.

    Reference: seohongpark/fql agents/ifql.py at 719d044; with `action_chunk` H > 1, QAM's chunked IFQL
    (ColinQiyangLi/qam agents/ifql.py at f93efd2). Intentional divergences: best-of-N takes its argmax per state
    (the reference's is right for one state only); no image encoder (docs/algorithms.md#ifql).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over value, critic and flow
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # BC flow MLP
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # V and Q MLPs
    layer_norm: bool = True  # LayerNorm in V and Q
    actor_layer_norm: bool = False  # LayerNorm in the flow
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critic
    expectile: float = 0.9  # expectile κ of the value regression
    num_samples: int = 32  # N candidate actions per state at acting time
    flow_steps: int = 10  # Euler steps of the flow
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)


def _networks(config: IFQLConfig, act_dim: int) -> tuple[Critic, Critic, VectorField]:
    critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
    value = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=1)
    flow = VectorField(config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm)
    return critic, value, flow


def init(config: IFQLConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise V, Q (2 heads) and the BC flow; the target critic starts as a copy of Q."""
    critic, value, flow = _networks(config, act_dim)
    rng, critic_key, value_key, flow_key = jax.random.split(key, 4)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {
        "critic": critic.init(critic_key, obs, act),
        "value": value.init(value_key, obs),
        "actor_flow": flow.init(flow_key, obs, act, t),
    }
    return new_state(params, {"critic": params["critic"]}, optax.adam(config.lr).init(params), rng, act_dim)


def total_loss(
    config: IFQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """IQL value + critic losses, plus the flow-matching BC loss (the flow never sees Q; docs/algorithms.md#ifql).
    Over chunks, as QAM (ColinQiyangLi/qam agents/ifql.py): γ^H and the `valid` mask in the critic loss, the
    expectile value loss unmasked, and a chunk crossing an episode end dropped whole from the flow loss."""
    critic, value, flow = _networks(config, batch["actions"].shape[-1])
    v_loss, v_info = iql.value_loss(critic, value, params, target_params, batch, config.expectile)
    discount = bootstrap_discount(config.discount, config.action_chunk)
    c_loss, c_info = iql.critic_loss(critic, value, params, batch, discount)
    obs = batch["observations"]
    a_loss = flow_matching_loss(
        lambda x, t: flow.apply(params["actor_flow"], obs, x, t), batch["actions"], key, sample_weights(batch)
    )
    metrics = {f"value/{k}": v for k, v in v_info.items()} | {f"critic/{k}": v for k, v in c_info.items()}
    return v_loss + c_loss + a_loss, metrics | {"actor/actor_loss": a_loss}


def update(config: IFQLConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the summed loss, then Polyak on the critic."""
    return summed_loss_update(
        optax.adam(config.lr),
        state,
        lambda p, key: total_loss(config, p, state.target_params, batch, key),
        targets=("critic",),
        tau=config.tau,
    )


def best_of_n(
    critic: Critic, critic_params: dict, observations: jax.Array, candidates: jax.Array, q_agg: str = "min"
) -> jax.Array:
    """Per state, the candidate (…, N, d) with the highest min (or mean, `q_agg`) over the critic heads."""
    obs_n = jnp.broadcast_to(observations[..., None, :], (*candidates.shape[:-1], observations.shape[-1]))
    qs = critic.apply(critic_params, obs_n, candidates)
    q = qs.mean(0) if q_agg == "mean" else qs.min(0)
    best = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(candidates, best[..., None, None], axis=-2).squeeze(-2)


def act(
    config: IFQLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """N flow samples per state, keep the one the online critic rates highest (min over heads).

    `deterministic` is ignored, as in the reference (the candidates are always sampled). Unlike the reference,
    the argmax is taken per state, so a batch of observations gets one correct action each (docs/algorithms.md#ifql).
    """
    del deterministic
    critic, _, flow = _networks(config, state.act_dim)
    noise = jax.random.normal(key, (*observations.shape[:-1], config.num_samples, state.act_dim))
    obs_n = jnp.broadcast_to(observations[..., None, :], (*noise.shape[:-1], observations.shape[-1]))
    candidates = euler_sample(
        lambda x, t: flow.apply(state.params["actor_flow"], obs_n, x, t), noise, config.flow_steps
    )
    return best_of_n(critic, state.params["critic"], observations, candidates)


def base_policy(config: IFQLConfig, state: TrainState) -> tuple[VectorField, dict]:
    """IFQL's BC flow, lent to DSRL as its base policy (`base_run`): (network, parameters)."""
    return _networks(config, state.act_dim)[2], state.params["actor_flow"]
