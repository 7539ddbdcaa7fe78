"""Best-of-N flow policy (BFN) and QC, the actor of Q-chunking (Li, Zhou, Levine 2025; ColinQiyangLi/qc
agents/acfql.py at 48283b4, `actor_type='best-of-n'`): a BC flow trained by flow matching alone, and a critic whose
target and whose acting both take the best of N flow samples by the online critic. QC is this learner over chunks
(N 32, H 5), BFN the same at H 1 with N 4 (qc README); docs/algorithms.md#bfn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import bootstrap_discount, td_loss
from flowsteer.algorithms.flow_bc import bc_flow_loss, decode, flow_net
from flowsteer.algorithms.ifql import best_of_n
from flowsteer.algorithms.networks import Critic, VectorField
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class BFNConfig:
    """BFN / QC hyperparameters; defaults are the reference's `get_config()` with `actor_type='best-of-n'`.

    Reference: ColinQiyangLi/qc agents/acfql.py at 48283b4. Intentional divergences: the one-step policy, which the
    reference builds but never trains for best-of-N, is not built (so `alpha` is absent); state only
    (docs/algorithms.md#bfn).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over critic and BC flow
    batch_size: int = 256  # chunks (or transitions) per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # BC flow MLP
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the BC flow
    discount: float = 0.99  # γ; the bootstrap after a chunk is γ^H
    tau: float = 0.005  # Polyak rate of the target critic
    q_agg: Literal["mean", "min"] = "mean"  # aggregation of the 2 heads, in the target and in the best-of-N score
    num_samples: int = 32  # N flow samples per state (QC: 32 with H 5; BFN: 4 with H 1, qc README)
    flow_steps: int = 10  # Euler steps of the BC flow
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)

    def __post_init__(self) -> None:
        if self.q_agg not in ("mean", "min"):
            raise ValueError(f"q_agg must be 'mean' or 'min', got {self.q_agg!r}")


def _critic(config: BFNConfig) -> Critic:
    return Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)


def _flow(config: BFNConfig, act_dim: int) -> VectorField:
    return flow_net(config.actor_hidden_dims, config.actor_layer_norm, act_dim)


def init(config: BFNConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise critic and BC flow; the target critic starts as a copy of the critic."""
    rng, critic_key, flow_key = jax.random.split(key, 3)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {
        "critic": _critic(config).init(critic_key, obs, act),
        "bc_flow": _flow(config, act_dim).init(flow_key, obs, act, t),
    }
    return new_state(params, {"critic": params["critic"]}, optax.adam(config.lr).init(params), rng, act_dim)


def best_actions(config: BFNConfig, params: dict, observations: jax.Array, key: jax.Array, act_dim: int) -> jax.Array:
    """N clipped Euler samples of the BC flow per state; the one the online critic rates highest (agg `q_agg`)."""
    noise = jax.random.normal(key, (*observations.shape[:-1], config.num_samples, act_dim))
    obs_n = jnp.broadcast_to(observations[..., None, :], (*noise.shape[:-1], observations.shape[-1]))
    candidates = decode(_flow(config, act_dim), params["bc_flow"], obs_n, noise, config.flow_steps)
    return best_of_n(_critic(config), params["critic"], observations, candidates, config.q_agg)


def critic_loss(
    config: BFNConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """TD loss with a′ the best of N flow samples by the frozen online critic, valued by the target critic (the
    reference's `sample_actions` in its target); over chunks, γ^H and the `valid` mask (docs/chunking.md)."""
    act_dim = batch["actions"].shape[-1]
    # docs/pitfalls.md pitfall 1: next-action sampling is frozen.
    next_actions = best_actions(config, jax.lax.stop_gradient(params), batch["next_observations"], key, act_dim)
    next_qs = _critic(config).apply(target_params["critic"], batch["next_observations"], next_actions)
    next_q = next_qs.min(axis=0) if config.q_agg == "min" else next_qs.mean(axis=0)
    discount = bootstrap_discount(config.discount, config.action_chunk)
    target_q = batch["rewards"] + discount * batch["masks"] * next_q
    q = _critic(config).apply(params["critic"], batch["observations"], batch["actions"])
    loss = td_loss(q, target_q, batch)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_max": q.max(), "q_min": q.min()}


def total_loss(
    config: BFNConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Critic loss + BC flow loss (QC-FQL's, masked per position over chunks); no Q term reaches the flow: best-of-N
    maximises Q by selection only."""
    critic_key, flow_key = jax.random.split(key)
    c_loss, c_info = critic_loss(config, params, target_params, batch, critic_key)
    flow_loss = bc_flow_loss(_flow(config, batch["actions"].shape[-1]), params["bc_flow"], batch, flow_key)
    metrics = {f"critic/{k}": v for k, v in c_info.items()} | {"actor/bc_flow_loss": flow_loss}
    return c_loss + flow_loss, metrics


def update(config: BFNConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the summed loss, then Polyak on the critic."""
    return summed_loss_update(
        optax.adam(config.lr),
        state,
        lambda p, key: total_loss(config, p, state.target_params, batch, key),
        targets=("critic",),
        tau=config.tau,
    )


def act(
    config: BFNConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """The best of N flow samples by the online critic. `deterministic` is ignored: the reference samples the
    candidates at evaluation too."""
    del deterministic
    return best_actions(config, state.params, observations, key, state.act_dim)


def base_policy(config: BFNConfig, state: TrainState) -> tuple[VectorField, dict]:
    """BFN's BC flow, lent to DSRL as its base policy (`base_run`): (network, parameters)."""
    return _flow(config, state.act_dim), state.params["bc_flow"]
