"""DDPM with ε-prediction and a VP beta schedule, as the official IDQL code trains and samples it
(DDPM paper Eq. 14 and Algorithm 2; philippe-eecs/IDQL jaxrl5/networks/diffusion.py; docs/algorithms.md#ddpm)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# eps(noisy_actions, times) -> predicted noise, with observations, parameters and dropout already bound.
NoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def vp_beta_schedule(num_steps: int) -> np.ndarray:
    """Discretised variance-preserving schedule (β_min 0.1, β_max 10) used by IDQL."""
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    b_min, b_max = 0.1, 10.0
    alpha = np.exp(-b_min / num_steps - 0.5 * (b_max - b_min) * (2 * t - 1) / num_steps**2)
    return (1 - alpha).astype(np.float32)


def schedule(num_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(β_t, α_t = 1 − β_t, ᾱ_t = Π_{s≤t} α_s) as float32 constants."""
    betas = vp_beta_schedule(num_steps)
    alphas = 1 - betas
    return betas, alphas, np.cumprod(alphas).astype(np.float32)


def ddpm_loss(eps: NoiseFn, actions: jax.Array, key: jax.Array, num_steps: int) -> jax.Array:
    """Mean over the batch of ‖ε(√ᾱ_t a + √(1−ᾱ_t) ε, t) − ε‖², summed over action dims (IDQL's BC loss)."""
    _, _, alpha_hats = schedule(num_steps)
    time_key, noise_key = jax.random.split(key)
    t = jax.random.randint(time_key, actions.shape[:-1], 0, num_steps)
    noise = jax.random.normal(noise_key, actions.shape)
    alpha_hat = jnp.asarray(alpha_hats)[t][..., None]
    noisy = jnp.sqrt(alpha_hat) * actions + jnp.sqrt(1 - alpha_hat) * noise
    pred = eps(noisy, t[..., None].astype(actions.dtype))
    return jnp.mean(jnp.sum((pred - noise) ** 2, axis=-1))


def ddpm_sample(
    eps: NoiseFn, key: jax.Array, shape: tuple[int, ...], num_steps: int, temperature: float = 1.0
) -> jax.Array:
    """Ancestral DDPM sampling from x_T ~ N(0, I), clipping to [−1, 1] after every step (IDQL clip_sampler)."""
    betas, alphas, alpha_hats = schedule(num_steps)
    init_key, key = jax.random.split(key)
    x = jax.random.normal(init_key, shape)
    for t in reversed(range(num_steps)):  # T = 5: unrolled
        times = jnp.full((*shape[:-1], 1), t, dtype=x.dtype)
        x = (x - (1 - alphas[t]) / np.sqrt(1 - alpha_hats[t]) * eps(x, times)) / np.sqrt(alphas[t])
        key, noise_key = jax.random.split(key)
        if t > 0:
            x = x + np.sqrt(betas[t]) * temperature * jax.random.normal(noise_key, shape)
        x = jnp.clip(x, -1.0, 1.0)
    return x
