"""The TD target and loss of a learner that acts in chunks of H actions (Q-chunking, Li et al. 2025, Sec. 4;
reference ColinQiyangLi/qc agents/acfql.py `critic_loss`; docs/chunking.md#sequence-batches).

A chunk batch's `rewards` already hold the H-step discounted sum and its `next_observations` the state after the
chunk, so the bootstrap is discounted by γ^H; a chunk that crosses an episode end (`valid` = 0) is left out of
the loss by a zero weight, and the mean stays over the whole batch (the reference's plain mean). With H = 1 both
reduce exactly to the single-step TD loss: γ^1 = γ, and a single-step batch has no `valid` key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from flowsteer.algorithms.training import Batch, action_chunk


def bootstrap_discount(config: Any) -> float:
    """γ^H, the discount of the value after a chunk of H actions (γ for single-step learners)."""
    return config.discount ** action_chunk(config)


def valid_mean(values: jax.Array, batch: Batch) -> jax.Array:
    """Mean of per-sample `values` (..., B) with each chunk that crosses an episode end counted as 0; the plain
    mean of a single-step batch (no `valid` key)."""
    if "valid" not in batch:
        return jnp.mean(values)
    return jnp.mean(values * batch["valid"])
