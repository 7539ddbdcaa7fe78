"""The SAC pieces that RLPD, Cal-QL and DSRL's noise policy share: the entropy temperature and its loss.

The tanh-Gaussian actor itself is `networks.GaussianActor` with `networks.tanh_gaussian_sample`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowsteer.algorithms.training import Metrics


def temperature(log_alpha: jax.Array) -> jax.Array:
    """α = exp(log α): the temperature is stored as its logarithm (seohongpark/fql `LogParam`)."""
    return jnp.exp(log_alpha)


def temperature_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: float) -> tuple[jax.Array, Metrics]:
    """α·(H − H_target) with the entropy estimate H frozen (seohongpark/fql agents/sac.py): its gradient reaches
    only log α, which falls while the policy's entropy is above the target and grows while it is below."""
    alpha = temperature(log_alpha)
    loss = alpha * (jax.lax.stop_gradient(entropy) - target_entropy)
    return loss, {"temperature/alpha": alpha, "temperature/alpha_loss": loss}
