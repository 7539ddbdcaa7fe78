"""DSRL-NA, noise-aliased diffusion steering (Wagenmaker et al. 2025, arXiv 2506.15799; docs/algorithms.md#dsrl-na).

A frozen BC flow policy π_dp(s, w) (the base: `dsrl.py`) is steered by a noise policy π^W(w | s) that learns from
ordinary (s, a, r, s′) transitions, so DSRL-NA runs offline, offline-to-online and online. Many noises decode to the
same action (they are "aliased"), so the value of a noise is learned through the action: an action critic Q^A(s, a)
is learned by TD, then distilled into a noise critic Q^W(s, w) ≈ Q^A(s, π_dp(s, w)), which π^W climbs by SAC.

One `update`, on one batch (the steps of the official code's `train`, ajwagen/stable-baselines3-dsrl
stable_baselines3/dsrl/dsrl.py, which steps α first but with the same pre-step α and entropy):
1. Q^A by TD on the batch's actions: y = r + γ·mask·V(s′), V(s′) = agg_i Q̄^A_i(s′, a′) [− α·log π^W(w′|s′)],
   a′ = π_dp(s′, w′), w′ ~ π^W(s′) (`critic_loss`; agg and the entropy term: `dsrl.soft_value`).
2. π^W by SAC against Q^W, then the temperature α (`dsrl.policy_step`).
3. `noise_critic_steps` steps of Q^W: head i regresses Q^A_i(s, π_dp(s, w)) on w ~ N(0, I) (`noise_critic_loss`).
4. Polyak of the target Q^A toward the post-step Q^A (as SB3).
The base is pretrained by flow BC during the first `base_steps` updates of the run (`pretrain_update`, which the
run loop runs first: flowsteer.algorithms.steering), or loaded from an earlier run (`base_run`); it is frozen
afterwards unless `base_trainable`, which keeps training it by BC in every update and decodes through its slow
EMA copy, as QAM's JAX DSRL does (ColinQiyangLi/qam agents/dsrl.py, `use_target_latent`).

Chunks of H = `action_chunk` actions (docs/chunking.md): as in QAM's JAX DSRL, the noise w is the whole H·d noise
that the base decodes into a chunk (not one d-dim noise repeated over the chunk, nakamotoo/dsrl_pi0#6), so the
base, π^W, Q^W and Q^A all act on H·d values; Q^A's TD target bootstraps with γ^H and leaves out chunks that cross
an episode end; the base learns by flow BC on the chunks, each position after an episode end left out (QC's BC;
QAM drops the whole chunk instead). A `base_run` must have been trained with the same H.

Unlike the official code, the noise bound is respected: π^W's noise lies in [−noise_bound, noise_bound]^d (the
official DSRL-NA ignores `action_magnitude` and bounds the noise by ±1; ajwagen/dsrl#6; docs/pitfalls.md, pitfall 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from flowsteer.algorithms import dsrl
from flowsteer.algorithms.chunks import bootstrap_discount, valid_mean
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, polyak, train_network

DEFAULT_BASE_STEPS = 500_000


@dataclass(frozen=True)
class DSRLNAConfig:
    """DSRL-NA hyperparameters. Defaults follow QAM's JAX DSRL on OGBench (ColinQiyangLi/qam agents/dsrl.py
    `get_config`) where it differs from the official torch code (ajwagen/dsrl cfg/, SB3 DSRL), whose value the
    comments give too; the noise bound is per task (presets)."""

    lr: float = 3e-4  # Adam learning rate of every network (each has its own Adam state)
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # noise policy π^W MLP (official: 3×2048)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Q^A and Q^W MLPs (official: 3×2048)
    layer_norm: bool = True  # LayerNorm in Q^A and Q^W
    actor_layer_norm: bool = False  # LayerNorm in π^W
    num_critics: int = 10  # heads of Q^A and of Q^W (official: 2)
    q_agg: Literal["mean", "min"] = "mean"  # target-head aggregation: mean − ρ·std (QAM) or min (official)
    q_std_penalty: float = 0.5  # ρ of mean − ρ·std (QAM: 0.5, 0 on humanoidmaze); used with q_agg='mean'
    discount: float = 0.99  # γ (0.995 on antmaze-giant, humanoidmaze, antsoccer)
    tau: float = 0.005  # Polyak rate of the target Q^A
    noise_bound: float = 1.0  # m: noise actions lie in [−m, m]^d (QAM: 0.4-1.4 per domain; official: 1.5)
    target_entropy: float | None = None  # entropy target of π^W; None: −0.5·dim(w) (QAM); official: 0
    backup_entropy: bool = False  # subtract α·log π^W(w′|s′) in the TD target (official: yes; QAM: no)
    init_temperature: float = 1.0  # initial α
    noise_critic_steps: int = 1  # Q^W distillation steps per update (QAM: 1; official: 10 per `utd` updates)
    actor_fc_scale: float = 1.0  # Xavier scale of π^W's mean and log-std heads (QAM's TanhNormal: 1)
    log_std_min: float = -20.0  # π^W's log-std is clipped to [log_std_min, log_std_max] (QAM and SB3: [−20, 2])
    log_std_max: float = 2.0
    deterministic_eval: bool = False  # evaluate the mode w = m·tanh(μ(s)); both references sample (False)
    base_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # base BC flow MLP (FQL's actor_bc_flow)
    base_layer_norm: bool = False  # LayerNorm in the base BC flow
    flow_steps: int = 10  # Euler steps decoding a noise into an action
    base_steps: int | None = None  # flow-BC pretraining updates at the start of the run; None: 500K, 0 with base_run
    base_run: str | None = None  # run directory of a finished flow-BC-capable run whose BC flow is the base
    # Refused when set (kept so the refusal can say why): DSRL-NA decodes the base inside every update (its
    # distillation decodes fresh noise), so a base outside JAX would be called from the compiled update.
    base_policy: str | None = None
    base_trainable: bool = False  # keep training the base by BC after pretraining; decode through its EMA copy
    base_tau: float = 0.005  # EMA rate of the decoding copy of a trainable base (QAM: τ)
    action_chunk: int = 1  # H, actions per policy call: set from the run (docs/chunking.md), never here

    def __post_init__(self) -> None:
        dsrl.check_config(self)
        if self.base_policy is not None:
            raise ValueError(
                f"dsrl_na cannot steer a base policy file ({self.base_policy}): every dsrl_na update decodes a batch "
                "of noise with the base (Q^A(s, π_dp(s, w)) in its noise-critic distillation), so the base would have "
                "to run inside the compiled update, on the learner's device, with its gradients blocked. Steer the "
                "file with dsrl_sac (--algo dsrl_sac --offline-steps 0 --hp base_policy=FILE), which calls the base "
                "only to act; or train the base in flowsteer (flow_bc) and give dsrl_na its run as base_run"
            )
        if self.noise_critic_steps < 1:
            raise ValueError(f"noise_critic_steps must be >= 1, got {self.noise_critic_steps}")
        if self.base_run is not None and self.base_steps:
            raise ValueError("base_run loads a pretrained base; base_steps would pretrain another: leave it unset")
        if self.base_steps is not None and self.base_steps < 0:
            raise ValueError(f"base_steps must be >= 0, got {self.base_steps}")

    @property
    def pretrain_steps(self) -> int:
        """Updates spent pretraining the base before steering starts."""
        if self.base_steps is not None:
            return self.base_steps
        return 0 if self.base_run is not None else DEFAULT_BASE_STEPS


def pretrain_steps(config: DSRLNAConfig) -> int:
    """How many of the run's first updates pretrain the base (`pretrain_update`) before steering starts."""
    return config.pretrain_steps


def check_run(config: DSRLNAConfig, offline_steps: int, online_steps: int) -> None:
    """A run must have a base to steer, and must not pretrain it on online data."""
    if config.base_run is None and config.pretrain_steps == 0 and not config.base_trainable:
        raise ValueError("the frozen base policy would never be trained: set base_steps > 0 or base_run")
    if online_steps > 0 and config.pretrain_steps > offline_steps:
        raise ValueError(
            f"base_steps ({config.pretrain_steps}) exceeds offline_steps ({offline_steps}): the base policy "
            "would still be pretraining in the online phase; raise offline_steps or lower base_steps"
        )


def init(config: DSRLNAConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Base flow (+ its EMA copy if trainable), Q^A (+ target), Q^W, π^W and α; one Adam state per network."""
    rng, shared_key, noise_critic_key = jax.random.split(key, 3)
    params, target_params = dsrl.init_shared(config, obs_dim, act_dim, shared_key, config.base_trainable)
    params["noise_critic"] = dsrl.critic_net(config).init(
        noise_critic_key, jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    )
    tx = dsrl.optimizer(config)
    opt_state = {name: tx.init(p) for name, p in params.items()}
    return new_state(params, target_params, opt_state, rng, act_dim)


def critic_loss(
    config: DSRLNAConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Step 1: mean over heads and batch of (Q^A_i(s, a) − y)², y = r + γ^H·mask·V(s′) with a′ = π_dp(s′, w′),
    w′ ~ π^W(s′); a chunk that crosses an episode end counts 0 in the mean. The noise policy, α, the base and the
    target heads are frozen."""
    frozen = jax.lax.stop_gradient(params)
    next_obs = batch["next_observations"]
    next_noise, next_log_prob = dsrl.sample_noise(config, frozen, next_obs, key, batch["actions"].shape[-1])
    next_actions = dsrl.decode_noise(config, frozen, target_params, next_obs, next_noise)
    next_qs = dsrl.critic_net(config).apply(target_params["critic"], next_obs, next_actions)
    discount = bootstrap_discount(config.discount, config.action_chunk)
    target_q = batch["rewards"] + discount * batch["masks"] * dsrl.soft_value(config, frozen, next_qs, next_log_prob)
    qs = dsrl.critic_net(config).apply(params["critic"], batch["observations"], batch["actions"])
    loss = valid_mean((qs - target_q) ** 2, batch)
    return loss, {
        "critic/critic_loss": loss,
        "critic/q_mean": qs.mean(),
        "critic/q_max": qs.max(),
        "critic/q_min": qs.min(),
    }


def noise_critic_loss(
    config: DSRLNAConfig, params: dict, target_params: dict, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, Metrics]:
    """Step 3: mean over heads and batch of (Q^W_i(s, w) − Q^A_i(s, π_dp(s, w)))², w = normal(key), unclipped
    N(0, I) as in both reference codes (SB3 DSRL `update_noise_critic`, QAM's distill_loss; docs/pitfalls.md,
    pitfall 10); Q^A and the base are frozen."""
    noise = jax.random.normal(key, (*observations.shape[:-1], act_dim))
    actions = dsrl.decode_noise(config, params, target_params, observations, noise)
    critic = dsrl.critic_net(config)
    target = critic.apply(jax.lax.stop_gradient(params["critic"]), observations, actions)
    qs = critic.apply(params["noise_critic"], observations, noise)
    loss = jnp.mean((qs - target) ** 2)
    return loss, {"noise_critic/distill_loss": loss, "noise_critic/q_mean": qs.mean()}


def _train_base(
    config: DSRLNAConfig, params: dict, opt_state: dict, targets: dict, batch: Batch, key: jax.Array
) -> tuple[dict, dict, dict, Metrics]:
    """A flow-BC step of the base; a trainable base's EMA copy (the one decoded) follows it at rate base_tau."""
    params, opt_state, metrics = dsrl.base_step(config, params, opt_state, batch, key)
    if config.base_trainable:
        targets = {**targets, "bc_flow": polyak(params["bc_flow"], targets["bc_flow"], config.base_tau)}
    return params, opt_state, targets, metrics


def pretrain_update(config: DSRLNAConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One update of the base's pretraining (the run's first `base_steps` updates): only the base learns."""
    rng, key = jax.random.split(state.rng)
    params, opt, targets, metrics = _train_base(config, state.params, state.opt_state, state.target_params, batch, key)
    new = state.replace(params=params, target_params=targets, opt_state=opt, step=state.step + 1, rng=rng)
    return new, metrics


def update(config: DSRLNAConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One steering update: the four steps of the module docstring, then a BC step of a trainable base."""
    rng, critic_key, policy_key, distill_key, base_key = jax.random.split(state.rng, 5)
    act_dim, obs = state.act_dim, batch["observations"]
    tx = dsrl.optimizer(config)
    targets = state.target_params
    # 1. Q^A by TD.
    params, opt, metrics = train_network(
        tx, state.params, state.opt_state, "critic", lambda p: critic_loss(config, p, targets, batch, critic_key)
    )
    # 2. π^W and α, against Q^W.
    params, opt, info = dsrl.policy_step(config, params, opt, "noise_critic", obs, policy_key, act_dim)
    metrics |= info

    # 3. Q^W distilled from Q^A.
    def distill(carry: tuple[dict, dict], key: jax.Array) -> tuple[tuple[dict, dict], Metrics]:
        p, o = carry
        p, o, m = train_network(
            tx, p, o, "noise_critic", lambda q: noise_critic_loss(config, q, targets, obs, key, act_dim)
        )
        return (p, o), m

    keys = jax.random.split(distill_key, config.noise_critic_steps)
    (params, opt), info = jax.lax.scan(distill, (params, opt), keys)
    metrics |= {k: v[-1] for k, v in info.items()}
    # 4. Polyak toward the critic after this step, as SB3 (the official DSRL) does.
    targets = {**targets, "critic": polyak(params["critic"], targets["critic"], config.tau)}
    if config.base_trainable:
        params, opt, targets, info = _train_base(config, params, opt, targets, batch, base_key)
        metrics |= info
    new = state.replace(params=params, target_params=targets, opt_state=opt, step=state.step + 1, rng=rng)
    return new, metrics


act = dsrl.act  # a = π_dp(s, w), w ~ π^W(s), also when evaluating unless deterministic_eval
base_policy = dsrl.base_policy  # the base this learner decodes with, lent to another run as its base_run
with_base_policy = dsrl.with_base_policy
