"""Behaviour cloning with a unit-variance Gaussian policy, as the FQL paper's BC baseline (App. E.2;
docs/algorithms.md#bc)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import step_weights
from flowsteer.algorithms.networks import GaussianActor, gaussian_actions, gaussian_log_prob
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class BCConfig:
    """BC hyperparameters (FQL paper App. E.2).

    Reference: none in seohongpark/fql (its IQL Gaussian actor with `const_std` and unit weights is the same
    objective). Intentional divergences: none; state only (docs/algorithms.md#bc).
    """

    lr: float = 3e-4  # Adam learning rate
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # policy MLP ([256]×4 was tried, 512 kept)
    actor_layer_norm: bool = False  # LayerNorm in the policy
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)


def _actor(config: BCConfig, act_dim: int) -> GaussianActor:
    # FQL paper App. E.2: constant unit std, so −log π is the MSE to the mean up to a constant.
    return GaussianActor(config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm, const_std=True)


def init(config: BCConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise the Gaussian policy."""
    rng, actor_key = jax.random.split(key)
    params = {"actor": _actor(config, act_dim).init(actor_key, jnp.zeros((1, obs_dim)))}
    return new_state(params, {}, optax.adam(config.lr).init(params), rng, act_dim)


def actor_loss(config: BCConfig, params: dict, batch: Batch) -> tuple[jax.Array, Metrics]:
    """Negative log-likelihood of the dataset actions. Over chunks, the actions after an episode end weigh 0,
    per position, as Q-chunking masks its BC flow loss (ColinQiyangLi/qc agents/acfql.py, actor_loss)."""
    mean, log_std = _actor(config, batch["actions"].shape[-1]).apply(params["actor"], batch["observations"])
    log_prob = gaussian_log_prob(mean, log_std, batch["actions"], step_weights(batch))
    loss = -log_prob.mean()
    return loss, {
        "actor/actor_loss": loss,
        "actor/bc_log_prob": log_prob.mean(),
        "actor/mse": jnp.mean((mean - batch["actions"]) ** 2),
    }


def update(config: BCConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the NLL."""
    return summed_loss_update(optax.adam(config.lr), state, lambda p, _: actor_loss(config, p, batch))


def act(
    config: BCConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """The mean action when deterministic (how the paper evaluates BC), else a sample; clipped to [−1, 1]."""
    mean, log_std = _actor(config, state.act_dim).apply(state.params["actor"], observations)
    return gaussian_actions(mean, log_std, key, deterministic)
