"""The base-policy interface that DSRL steers: a batched, deterministic map `(observations, noise) -> actions`.

DSRL (Wagenmaker et al. 2025, arXiv 2506.15799, §4) never changes the policy it steers; it only chooses the noise
that starts the policy's sampler. Anything that maps a noise to an action as a function can be steered: a DDIM
sampler (η = 0) or a flow's Euler steps. A stochastic sampler (DDPM, or DDIM with η > 0) draws fresh noise inside,
so the same chosen noise gives different actions, and it is refused (`check_base_policy`).

Shapes (docs/base-policies.md): observations (n, obs_dim), noise and actions (n, action_chunk · act_dim), float32,
chunks flattened time-major as flowsteer's chunked learners flatten them (docs/chunking.md). The noise has the
actions' shape: a diffusion or flow sampler starts from a noise the size of its output.

Implementations: flowsteer's own BC flows (a finished run's `base_run`, flowsteer.platform.base_policy), torch
policies from a file (flowsteer.policies.torch_policy), and either one served by a Ray actor
(flowsteer.policies.serving).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

DETERMINISTIC_SAMPLERS = ("ddim", "euler")  # DDIM with η = 0; a flow's Euler integration
PROBE_ROWS = 4  # rows of the probe batch that `check_base_policy` decodes


class BasePolicyError(ValueError):
    """A base policy that cannot be steered as given: the message names the problem and the fix."""


@dataclass(frozen=True)
class BasePolicyInfo:
    """What a base policy declares about itself, recorded in every run's protocol.

    `file` and `sha256` name what was loaded (a run resumed later checks the checksum); `sampler` is one of
    DETERMINISTIC_SAMPLERS and `sampler_steps` its number of denoising or integration steps."""

    obs_dim: int
    act_dim: int  # one action's size; a chunk is action_chunk of them
    action_chunk: int
    framework: str  # 'torch' or 'flowsteer' (a JAX flow of an earlier run)
    sampler: str
    sampler_steps: int
    file: str | None = None
    sha256: str | None = None
    device: str = "cpu"

    @property
    def noise_dim(self) -> int:
        return self.action_chunk * self.act_dim

    def provenance(self) -> dict[str, Any]:
        return asdict(self) | {"noise_dim": self.noise_dim}


@runtime_checkable
class BasePolicy(Protocol):
    """A steerable base policy: `decode` is a function of its inputs (no randomness of its own, no state)."""

    info: BasePolicyInfo

    def decode(self, observations: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(n, obs_dim), (n, noise_dim) float32 -> (n, noise_dim) float32 actions, chunks flattened time-major."""
        ...


def check_sampler(sampler: str, what: str) -> None:
    """Refuse a declared sampler that draws noise of its own (anything but DETERMINISTIC_SAMPLERS)."""
    if sampler not in DETERMINISTIC_SAMPLERS:
        raise BasePolicyError(
            f"{what} declares sampler {sampler!r}, which draws its own noise: the same chosen noise would give "
            f"different actions, so it cannot be steered. Export it with a deterministic sampler "
            f"({', '.join(DETERMINISTIC_SAMPLERS)}; DDIM with eta = 0)."
        )


def check_fits(info: BasePolicyInfo, obs_dim: int, act_dim: int, action_chunk: int, what: str) -> None:
    """Refuse a base policy whose declared shapes differ from the run's task and chunk length."""
    check_sampler(info.sampler, what)
    wrong = [
        f"{name} {theirs} (this run: {ours})"
        for name, theirs, ours in (
            ("obs_dim", info.obs_dim, obs_dim),
            ("act_dim", info.act_dim, act_dim),
            ("action_chunk", info.action_chunk, action_chunk),
        )
        if theirs != ours
    ]
    if wrong:
        raise BasePolicyError(
            f"{what} does not fit this run: it declares {', '.join(wrong)}. Steer it on a task with its shapes"
            + (f" and run with --action-chunk {info.action_chunk}" if info.action_chunk != action_chunk else "")
            + ", or train a base policy for this task."
        )


def check_base_policy(policy: BasePolicy, what: str, seed: int = 0) -> None:
    """Decode one probe batch three times and refuse what cannot be steered: wrong output shape, non-finite actions,
    or different actions for the same noise (a sampler with randomness of its own)."""
    info = policy.info
    rng = np.random.default_rng(seed)
    observations = rng.standard_normal((PROBE_ROWS, info.obs_dim)).astype(np.float32)
    noise = rng.standard_normal((PROBE_ROWS, info.noise_dim)).astype(np.float32)
    first = np.asarray(policy.decode(observations, noise))
    if first.shape != (PROBE_ROWS, info.noise_dim):
        raise BasePolicyError(
            f"{what} returned actions of shape {first.shape} for {PROBE_ROWS} observations of size {info.obs_dim} "
            f"and noise of size {info.noise_dim}; expected {(PROBE_ROWS, info.noise_dim)} "
            f"(action_chunk {info.action_chunk} x act_dim {info.act_dim}, flattened). Fix its forward or its "
            "declared shapes."
        )
    if not np.all(np.isfinite(first)):
        raise BasePolicyError(f"{what} returned non-finite actions on a probe batch; check its weights")
    # Three calls: a policy that changes after its first calls (a JIT that optimises once it has profiled) is caught.
    second = np.asarray(policy.decode(observations, noise))
    if np.array_equal(first, second):
        second = np.asarray(policy.decode(observations, noise))
    if not np.array_equal(first, second):
        raise BasePolicyError(
            f"{what} gave different actions for the same observations and noise (max difference "
            f"{float(np.max(np.abs(first - second))):.3g}): its sampler draws noise of its own, so DSRL cannot "
            "steer it. Use a deterministic sampler (DDIM with eta = 0, or a flow's Euler steps) and no dropout."
        )
