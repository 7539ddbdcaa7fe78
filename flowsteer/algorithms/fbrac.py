"""Flow behaviour-regularised actor-critic (FBRAC, "flow Diffusion-QL"; FQL paper Sec. 4.1 and App. E.2): the
flow-matching BC loss plus a Q loss backpropagated through the whole Euler chain of the flow (BPTT through the
10 steps). The FQL paper's code is not public; this follows chongyi-zheng/value-flows agents/fbrac.py, written
in the FQL codebase's conventions; docs/algorithms.md#fbrac.

The TD loss and the flow sampler are FAWAC's: both learners back up through their own flow's next action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.fawac import flow_actions, td_loss
from flowsteer.algorithms.flow import flow_matching_loss
from flowsteer.algorithms.networks import Critic, VectorField
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class FBRACConfig:
    """FBRAC hyperparameters; defaults are the reference's `get_config()`.

    Reference: chongyi-zheng/value-flows agents/fbrac.py at 0183335. Intentional divergences: none in the
    objective; frozen inputs are explicit stop-gradients; no image encoder, state only (docs/algorithms.md#fbrac).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over critic and flow
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # flow policy v_θ(s, x, t)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the flow
    discount: float = 0.99  # γ (0.995 on antmaze-giant, humanoidmaze, antsoccer)
    tau: float = 0.005  # Polyak rate of the target critic
    # Aggregation of the 2 target heads. FQL uses min on antmaze-large/giant; UNVERIFIED for FBRAC, so the
    # presets keep the mean everywhere.
    q_agg: Literal["mean", "min"] = "mean"
    alpha: float = 10.0  # BC coefficient α of α·L_flow + L_q, tuned per environment
    flow_steps: int = 10  # Euler steps, for acting, for the TD target and for the BPTT chain of the Q loss
    # Scale the Q loss by 1/mean|Q|; off in the reference, and UNVERIFIED (likely off) in the FQL paper, whose α
    # range fits unnormalised Q.
    normalize_q_loss: bool = False

    def __post_init__(self) -> None:
        if self.q_agg not in ("mean", "min"):
            raise ValueError(f"q_agg must be 'mean' or 'min', got {self.q_agg!r}")


def _networks(config: FBRACConfig, act_dim: int) -> tuple[Critic, VectorField]:
    critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
    flow = VectorField(config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm)
    return critic, flow


def init(config: FBRACConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise critic and flow; the target critic starts as a copy of the critic."""
    critic, flow = _networks(config, act_dim)
    rng, critic_key, flow_key = jax.random.split(key, 3)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {"critic": critic.init(critic_key, obs, act), "actor_flow": flow.init(flow_key, obs, act, t)}
    return new_state(params, {"critic": params["critic"]}, optax.adam(config.lr).init(params), rng, act_dim)


def critic_loss(
    config: FBRACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """TD loss with a′ from the frozen flow (10 Euler steps) and the mean or min of the target heads."""
    critic, flow = _networks(config, batch["actions"].shape[-1])
    aggregate = (lambda qs: qs.min(axis=0)) if config.q_agg == "min" else (lambda qs: qs.mean(axis=0))
    return td_loss(
        critic,
        flow,
        params,
        target_params,
        batch,
        key,
        discount=config.discount,
        flow_steps=config.flow_steps,
        aggregate=aggregate,
    )


def actor_actions(config: FBRACConfig, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
    """a^π = clip(Euler(v_θ; s, z), −1, 1), differentiable in θ through every Euler step and through the final
    clip (zero gradient outside [−1, 1], as the reference): the BPTT chain of the Q loss."""
    _, flow = _networks(config, noise.shape[-1])
    return flow_actions(flow, params["actor_flow"], observations, noise, config.flow_steps)


def q_loss(
    config: FBRACConfig, params: dict, observations: jax.Array, actions: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(−mean_b mean_i Q_φi(s, a), the per-sample Q) with the critic frozen; optionally scaled by 1/mean|Q|."""
    critic, _ = _networks(config, actions.shape[-1])
    q = critic.apply(jax.lax.stop_gradient(params["critic"]), observations, actions).mean(axis=0)
    loss = -q.mean()
    if config.normalize_q_loss:
        loss = loss * jax.lax.stop_gradient(1.0 / jnp.abs(q).mean())
    return loss, q


def actor_loss(config: FBRACConfig, params: dict, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
    """α·L_flow + L_q (the reference's form; QAM's L_flow + L_q/α is the same up to a scale Adam ignores).

    The key splits into (flow-matching draws, actor noise z)."""
    obs, actions = batch["observations"], batch["actions"]
    _, flow = _networks(config, actions.shape[-1])
    flow_key, noise_key = jax.random.split(key)
    bc_flow_loss = flow_matching_loss(lambda x, t: flow.apply(params["actor_flow"], obs, x, t), actions, flow_key)
    policy_actions = actor_actions(config, params, obs, jax.random.normal(noise_key, actions.shape))
    q_part, q = q_loss(config, params, obs, policy_actions)
    loss = config.alpha * bc_flow_loss + q_part
    # The reference logs this distance with a third, separate Euler chain; the actor's own actions cost nothing.
    mse = jnp.mean((jax.lax.stop_gradient(policy_actions) - actions) ** 2)
    return loss, {"actor_loss": loss, "bc_flow_loss": bc_flow_loss, "q_loss": q_part, "q": q.mean(), "mse": mse}


def total_loss(
    config: FBRACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Critic loss + actor loss, differentiated once w.r.t. all `params` (one Adam step, as the reference)."""
    critic_key, actor_key = jax.random.split(key)
    c_loss, c_info = critic_loss(config, params, target_params, batch, critic_key)
    a_loss, a_info = actor_loss(config, params, batch, actor_key)
    metrics = {f"critic/{k}": v for k, v in c_info.items()} | {f"actor/{k}": v for k, v in a_info.items()}
    return c_loss + a_loss, metrics


def update(config: FBRACConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the summed loss, then Polyak on the critic."""
    return summed_loss_update(
        optax.adam(config.lr),
        state,
        lambda p, key: total_loss(config, p, state.target_params, batch, key),
        targets=("critic",),
        tau=config.tau,
    )


def act(
    config: FBRACConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Integrate the flow from z ~ N(0, I). `deterministic` is ignored: the reference ignores its temperature
    and evaluates stochastically (docs/pitfalls.md pitfall 2)."""
    del deterministic
    _, flow = _networks(config, state.act_dim)
    noise = jax.random.normal(key, (*observations.shape[:-1], state.act_dim))
    return flow_actions(flow, state.params["actor_flow"], observations, noise, config.flow_steps)


def base_policy(config: FBRACConfig, state: TrainState) -> tuple[VectorField, dict]:
    """FBRAC's (Q-steered) flow, lent to DSRL as its base policy (`base_run`): (network, parameters)."""
    return _networks(config, state.act_dim)[1], state.params["actor_flow"]
