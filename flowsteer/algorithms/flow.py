"""Flow matching (linear path, velocity target) and the Euler sampler of FQL and IFQL (FQL paper Sec. 3;
docs/algorithms.md#flow-matching)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# velocity(x_t, t) -> v, with the observations and parameters already bound.
VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def flow_matching_squared_errors(velocity: VelocityFn, actions: jax.Array, key: jax.Array) -> jax.Array:
    """(v(xᵗ, t) − (x¹ − x⁰))² per action value, xᵗ = (1−t)x⁰ + t·x¹, x¹ = a, one t per sample (FQL paper
    Sec. 3); shape `actions.shape`."""
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, actions.shape)
    t = jax.random.uniform(time_key, (*actions.shape[:-1], 1))
    x_t = (1 - t) * x0 + t * actions
    return (velocity(x_t, t) - (actions - x0)) ** 2


def flow_matching_errors(velocity: VelocityFn, actions: jax.Array, key: jax.Array) -> jax.Array:
    """Per-sample mean over action dims of the flow-matching squared error; shape `actions.shape[:-1]`. FAWAC
    weights these before the batch mean."""
    return jnp.mean(flow_matching_squared_errors(velocity, actions, key), axis=-1)


def chunk_flow_matching_loss(
    velocity: VelocityFn, chunks: jax.Array, valid_steps: jax.Array, key: jax.Array
) -> jax.Array:
    """The flow-matching loss of flat time-major chunks (B, H·d) with each position k weighted by `valid_steps`
    (B, H): actions after an episode end inside a chunk belong to another episode and are not imitated. The mean
    keeps the zeroed values in its denominator (Li et al. 2025, Q-chunking; ColinQiyangLi/qc agents/acfql.py
    `actor_loss`, the BC flow loss reshaped to (B, H, d))."""
    errors = flow_matching_squared_errors(velocity, chunks, key)
    batch, horizon = valid_steps.shape
    return jnp.mean(errors.reshape(batch, horizon, -1) * valid_steps[..., None])


def flow_matching_loss(velocity: VelocityFn, actions: jax.Array, key: jax.Array) -> jax.Array:
    """Mean over batch and action dims of (v(xᵗ, t) − (x¹ − x⁰))² (FQL paper Sec. 3): the unweighted BC flow loss."""
    return jnp.mean(flow_matching_errors(velocity, actions, key))


def euler_sample(velocity: VelocityFn, noise: jax.Array, steps: int) -> jax.Array:
    """Integrate dx/dt = v from x⁰ = noise with `steps` Euler steps (t_i = i/steps), then clip to [−1, 1]."""
    x = noise
    for i in range(steps):  # unrolled on purpose: `steps` is static and small (10), XLA fuses the chain
        t = jnp.full((*noise.shape[:-1], 1), i / steps, dtype=noise.dtype)
        x = x + velocity(x, t) / steps
    # docs/pitfalls.md pitfall 3: flow outputs are clipped after the Euler steps, not inside them.
    return jnp.clip(x, -1.0, 1.0)
