"""DSRL-SAC, diffusion steering with SAC in the noise space (Wagenmaker et al. 2025, arXiv 2506.15799;
docs/algorithms.md#dsrl-sac).

The latent MDP: its action is the noise w ∈ [−m, m]^d that starts the base flow policy's Euler integration, and
its environment decodes w once into a = π_dp(s, w) and steps the real environment with a. Plain SAC runs on it
(ajwagen/dsrl train_dsrl.py: SB3 SAC on `DiffusionPolicyEnvWrapper`): the critic Q(s, w) and the tanh-Gaussian
noise policy π(w | s) both live in noise space, and the replay buffer stores w next to a (`explore` returns
both; the collector writes them).

Dataset transitions carry no w, so DSRL-SAC learns from online transitions only. The run loop makes that
explicit (flowsteer.algorithms.steering): every offline update is a `pretrain_update` (flow BC of the base; with
`base_run` the base is loaded and the offline phase is empty), every online update is an `update` on a batch of
noise-labelled transitions, and the online replay buffer does not start with the dataset.

The online phase opens as the official one does (ajwagen/dsrl train_dsrl.py, utils.py `collect_rollouts`): the
first `warmup_steps` environment steps act with the base policy alone, w ~ N(0, I) clipped to [−m, m]
(`warmup_explore`), and fill the buffer; SAC updates start after them.

Unlike the official code, each noise vector is decoded exactly once (its rollout collection decoded twice,
ajwagen/dsrl#6; docs/pitfalls.md, pitfall 9), and the noise bound m is the bound of the stored noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from flowsteer.algorithms import dsrl
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, polyak, train_network

ONLINE_COLUMNS = ("noises",)  # what the replay buffer stores besides the transition: the latent action w


@dataclass(frozen=True)
class DSRLSACConfig:
    """DSRL-SAC hyperparameters: the official DSRL-SAC settings (SB3 SAC; ajwagen/dsrl cfg/robomimic transport) on
    FQL-codebase networks."""

    lr: float = 3e-4  # Adam learning rate of every network (each has its own Adam state)
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # noise policy MLP (official: 3×128 on transport)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic Q(s, w) MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the noise policy
    num_critics: int = 2  # critic heads (official: 2)
    q_agg: Literal["mean", "min"] = "min"  # target-head aggregation: min (official, clipped double Q) or mean − ρ·std
    q_std_penalty: float = 0.0  # ρ of mean − ρ·std; used with q_agg='mean'
    discount: float = 0.99  # γ of the latent MDP (one noise per environment step)
    tau: float = 0.005  # Polyak rate of the target critic
    noise_bound: float = 1.0  # m: noise actions lie in [−m, m]^d (official: 1.0 on robomimic transport)
    target_entropy: float | None = 0.0  # entropy target of the noise policy (official: 0); None: −0.5·dim(w)
    backup_entropy: bool = True  # subtract α·log π(w′|s′) in the TD target (SB3's SAC, so the official)
    init_temperature: float = 1.0  # initial α (SB3 'auto' starts at 1)
    # Xavier scale of the noise policy's mean and log-std heads. SB3 initialises every layer, heads included, with
    # PyTorch's default (uniform ±1/√fan_in, nonzero bias); here every layer is the FQL codebase's (Xavier, zero
    # bias; docs/algorithms.md#dsrl-sac), and the heads are initialised like the layers below them, as in QAM.
    actor_fc_scale: float = 1.0
    log_std_min: float = -20.0  # the noise policy's log-std clip (SB3's LOG_STD_MIN, LOG_STD_MAX: [−20, 2])
    log_std_max: float = 2.0
    deterministic_eval: bool = False  # evaluate the mode w = m·tanh(μ(s)); the official code samples (False)
    base_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # base BC flow MLP (FQL's actor_bc_flow)
    base_layer_norm: bool = False  # LayerNorm in the base BC flow
    flow_steps: int = 10  # Euler steps decoding a noise into an action
    base_run: str | None = None  # run directory of a finished flow-BC-capable run whose BC flow is the base
    # A base policy file (a torch diffusion or flow policy; docs/base-policies.md), decoded outside JAX: the
    # paper's black-box setting, where only the chosen noise reaches the base and no gradient leaves it.
    base_policy: str | None = None
    # Online steps that roll out the base policy (w ~ N(0, I) clipped to ±m) into the buffer before any update.
    # Official: init_rollout_steps = 20001 vectorised steps on 4 environments before training (cfg/robomimic
    # dsrl_transport.yaml), i.e. 80,004 buffer rows; here one environment, one row per step.
    warmup_steps: int = 80_004

    def __post_init__(self) -> None:
        dsrl.check_config(self)
        if self.base_run is not None and self.base_policy is not None:
            raise ValueError(
                "base_run and base_policy both name a base: set base_run for an earlier flowsteer run's BC flow, or "
                "base_policy for a base policy file, not both"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


def loads_base(config: DSRLSACConfig) -> bool:
    """Whether the base comes pretrained (an earlier run's flow, or a base policy file) rather than from this run."""
    return config.base_run is not None or config.base_policy is not None


def pretrain_steps(config: DSRLSACConfig) -> int | None:
    """Updates that pretrain the base: every offline update (None), or none when the base is loaded."""
    return 0 if loads_base(config) else None


def external_base(config: DSRLSACConfig) -> str | None:
    """The base policy file that decodes this learner's noise outside JAX, if any."""
    return config.base_policy


def warmup_steps(config: DSRLSACConfig) -> int:
    """How many of the first online steps roll out the base policy and run no update."""
    return config.warmup_steps


def check_run(config: DSRLSACConfig, offline_steps: int, online_steps: int) -> None:
    """The offline phase is the base's pretraining: it needs one without base_run, and none with it. The online
    phase must outlast the warm-up, or no update would run."""
    if not loads_base(config) and offline_steps == 0:
        raise ValueError(
            "no base policy: pretrain it in the offline phase (offline_steps > 0), or set base_run or base_policy"
        )
    if loads_base(config) and offline_steps > 0:
        which = "base_run" if config.base_run is not None else "base_policy"
        raise ValueError(
            f"with {which} the offline phase has nothing to learn (dataset transitions carry no noise, and the "
            "loaded base is frozen): set offline_steps to 0"
        )
    if 0 < online_steps <= config.warmup_steps:
        raise ValueError(
            f"online_steps ({online_steps}) must exceed warmup_steps ({config.warmup_steps}): the first "
            "warmup_steps online steps roll out the base policy without updates; lower warmup_steps or raise "
            "online_steps"
        )


def init(config: DSRLSACConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Base flow, critic Q(s, w) (+ target), noise policy and α; one Adam state per network. The critic reads a
    noise where DSRL-NA's reads an action: both have dim(a) entries. An external base (`base_policy`) has no
    parameters here."""
    rng, shared_key = jax.random.split(key)
    external = config.base_policy is not None
    params, target_params = dsrl.init_shared(config, obs_dim, act_dim, shared_key, False, external_base=external)
    tx = dsrl.optimizer(config)
    return new_state(params, target_params, {n: tx.init(p) for n, p in params.items()}, rng, act_dim)


def critic_loss(
    config: DSRLSACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Soft TD regression of every head on the stored noise: Q_i(s, w) → r + γ·mask·V(s′), V(s′) =
    agg Q̄(s′, w′) − α·log π(w′|s′) with w′ ~ π(s′) (`dsrl.soft_value`); the policy, α and the target heads are
    frozen."""
    frozen = jax.lax.stop_gradient(params)
    next_obs = batch["next_observations"]
    next_noise, next_log_prob = dsrl.sample_noise(config, frozen, next_obs, key, batch["actions"].shape[-1])
    next_qs = dsrl.critic_net(config).apply(target_params["critic"], next_obs, next_noise)
    target_q = batch["rewards"] + config.discount * batch["masks"] * dsrl.soft_value(
        config, frozen, next_qs, next_log_prob
    )
    qs = dsrl.critic_net(config).apply(params["critic"], batch["observations"], batch["noises"])
    loss = jnp.mean((qs - target_q) ** 2)
    return loss, {
        "critic/critic_loss": loss,
        "critic/q_mean": qs.mean(),
        "critic/q_max": qs.max(),
        "critic/q_min": qs.min(),
    }


def pretrain_update(config: DSRLSACConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One offline update: a flow-BC step of the base on a dataset batch (the base's pretraining)."""
    rng, key = jax.random.split(state.rng)
    params, opt, metrics = dsrl.base_step(config, state.params, state.opt_state, batch, key)
    return state.replace(params=params, opt_state=opt, step=state.step + 1, rng=rng), metrics


def update(config: DSRLSACConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One SAC update in noise space on a batch of online transitions, which carry the noise `w` that was decoded
    into each action (the replay column `noises`): the critic, then the noise policy and α, then Polyak."""
    if "noises" not in batch:
        raise ValueError(
            "DSRL-SAC learns from online transitions labelled with their noise (the replay column 'noises'); "
            "dataset batches have none: pretrain the base on them with pretrain_update"
        )
    rng, critic_key, policy_key = jax.random.split(state.rng, 3)
    tx = dsrl.optimizer(config)
    params, opt, metrics = train_network(
        tx,
        state.params,
        state.opt_state,
        "critic",
        lambda p: critic_loss(config, p, state.target_params, batch, critic_key),
    )
    params, opt, info = dsrl.policy_step(
        config, params, opt, "critic", batch["observations"], policy_key, state.act_dim
    )
    targets = {**state.target_params, "critic": polyak(params["critic"], state.target_params["critic"], config.tau)}
    new = state.replace(params=params, target_params=targets, opt_state=opt, step=state.step + 1, rng=rng)
    return new, metrics | info


def explore(
    config: DSRLSACConfig, state: TrainState, observations: jax.Array, key: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Online collection: w ~ π(s), decoded once into a = π_dp(s, w); the buffer stores both."""
    actions, noises = dsrl.steer(config, state, observations, key, deterministic=False)
    return actions, {"noises": noises}


def warmup_explore(
    config: DSRLSACConfig, state: TrainState, observations: jax.Array, key: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Warm-up collection: the base policy alone, w ~ N(0, I) clipped to [−m, m], decoded once; the buffer stores
    both (the official `collect_rollouts`)."""
    noises = dsrl.base_noise(config, observations, key, state.act_dim)
    return dsrl.decode_noise(config, state.params, state.target_params, observations, noises), {"noises": noises}


# With an external base (`base_policy`) the learner only chooses noise; flowsteer.workers.rollout decodes it.
def act_noise(
    config: DSRLSACConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """The noise `act` would decode (its mode only with deterministic_eval, as `act`)."""
    return dsrl.choose_noise(config, state, observations, key, deterministic and config.deterministic_eval)


def explore_noise(config: DSRLSACConfig, state: TrainState, observations: jax.Array, key: jax.Array) -> jax.Array:
    """The noise `explore` would decode: w ~ π(s)."""
    return dsrl.choose_noise(config, state, observations, key, deterministic=False)


def warmup_noise(config: DSRLSACConfig, state: TrainState, observations: jax.Array, key: jax.Array) -> jax.Array:
    """The noise `warmup_explore` would decode: the base alone, w ~ N(0, I) clipped to [−m, m]."""
    return dsrl.base_noise(config, observations, key, state.act_dim)


act = dsrl.act  # a = π_dp(s, w), w ~ π^W(s), also when evaluating unless deterministic_eval
base_policy = dsrl.base_policy  # the base this learner decodes with, lent to another run as its base_run
with_base_policy = dsrl.with_base_policy
