"""What a learner changes when it trains on chunks of H actions (Q-chunking, Li, Zhou, Levine 2025, Sec. 4;
docs/chunking.md). With H = 1 the batch has no `valid` keys and every function here returns what the single-step
learner computed before chunking existed, bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowsteer.algorithms.training import Batch


def bootstrap_discount(discount: float, action_chunk: int) -> float:
    """γ^H: the batch's reward already sums the H rewards of the chunk (ColinQiyangLi/qc agents/acfql.py,
    critic_loss); a Python float, so H = 1 gives γ itself."""
    return discount**action_chunk


def valid_mean(values: jax.Array, batch: Batch) -> jax.Array:
    """Mean of per-sample `values` (..., B) with each chunk that crosses an episode end counted as 0 and the mean
    still over the whole batch; the plain mean of a single-step batch (no `valid` key)."""
    if "valid" not in batch:
        return jnp.mean(values)
    return jnp.mean(values * batch["valid"])


def td_loss(q: jax.Array, target_q: jax.Array, batch: Batch, sum_heads: bool = False) -> jax.Array:
    """mean over heads (or their sum, `sum_heads`) and samples of (Q − y)², q shaped (heads, B). In a chunk batch
    each sample's error is multiplied by `valid` (a chunk that crosses an episode end bootstraps from the wrong
    state) and the mean is still over the whole batch, not renormalised by the valid count, as
    ColinQiyangLi/qc agents/acfql.py does (docs/chunking.md)."""
    errors = (q - target_q) ** 2
    if "valid" in batch:
        errors = errors * batch["valid"]
    return errors.sum(0).mean() if sum_heads else errors.mean()


def sample_weights(batch: Batch) -> jax.Array | None:
    """`valid` as (B, 1) weights that drop a chunk crossing an episode end from a behaviour-cloning loss whole (QAM's
    mask, ColinQiyangLi/qam agents/ifql.py, actor_loss); None in a single-step batch."""
    return batch["valid"][:, None] if "valid" in batch else None


def step_weights(batch: Batch) -> jax.Array | None:
    """`valid_steps` (B, H) repeated over the d values of each position: (B, H·d) weights that drop the actions
    after an episode end from a behaviour-cloning loss (the flat chunk is time-major); None in a single-step batch."""
    if "valid_steps" not in batch:
        return None
    horizon = batch["valid_steps"].shape[-1]
    return jnp.repeat(batch["valid_steps"], batch["actions"].shape[-1] // horizon, axis=-1)
