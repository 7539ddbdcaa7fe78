"""Consistency Actor-Critic (CAC; Ding & Jin, ICLR 2024, arXiv 2309.16984): a consistency-model policy trained by
consistency training toward the data plus a Q-learning term, with a max-Q backup critic. Follows the official torch
code (quantumiracle/Consistency_Model_For_Reinforcement_Learning, agents/ql_consistency.py, agents/consistency.py)
in the setting the FQL paper ran it (App. E.2); docs/algorithms.md#cac."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsteer.algorithms.networks import MLP, Critic
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, polyak, train_network

# The consistency parameterisation of the reference (Song et al. 2023, consistency models, App. C): σ_data, the
# smallest noise level ε (where f(x, ε) = x), the largest T, and the Karras et al. (2022) spacing exponent ρ.
SIGMA_DATA = 0.5
EPS = 0.002
T_MAX = 80.0
RHO = 7.0
SAMPLING_T_MIN = 2.0  # the reference samples on linspace(2, 80, T), not down to ε
INITIAL_SCALES, FINAL_SCALES = 2, 150  # the discretisation count N ramps between these (consistency models Eq. 25)
CONSISTENCY_WEIGHT = 100.0  # the reference's scaled loss: 100 / (t2 − t1) per sample

# net(x, t) -> F(x, t): the raw network with observations and parameters bound.
NetFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class CACConfig:
    """CAC hyperparameters: the setting the FQL paper lists for the official code (no Q normalisation, scaled
    consistency loss, max-Q backup, gradient clip 5), with the official networks; η is set per environment
    (presets).

    Reference: quantumiracle/Consistency_Model_For_Reinforcement_Learning agents/ql_consistency.py at cdeae87.
    Fields marked UNVERIFIED are settings the FQL paper does not state; their defaults are the official
    antmaze-large rows. Divergences (Xavier instead of torch initialisation, no LR decay, a configurable
    restart period of the N schedule) are in docs/algorithms.md#cac.
    """

    actor_lr: float = 3e-4  # Adam learning rate of the consistency policy (UNVERIFIED: official antmaze rows)
    critic_lr: float = 3e-4  # Adam learning rate of the critic (hard-coded in the reference)
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)  # consistency network body, Mish
    value_hidden_dims: tuple[int, ...] = (256, 256, 256)  # each of the 2 critic MLPs, Mish, no LayerNorm
    time_dim: int = 16  # sinusoidal embedding of the noise level t (then Dense(2·dim) → Mish → Dense(dim))
    discount: float = 0.99  # γ (0.995 on antmaze-giant, humanoidmaze, antsoccer: UNVERIFIED for CAC)
    tau: float = 0.005  # Polyak rate of the target critic, every update
    eta: float = 1.0  # Q-loss coefficient η, tuned per environment (FQL paper Table 6)
    sampling_steps: int = 2  # T: consistency evaluations per action, noise levels linspace(2, 80, T) reversed
    max_q_backup: bool = True  # target = min over heads of the max over `backup_samples` EMA-actor actions
    backup_samples: int = 10  # next actions per state for the max-Q backup (hard-coded 10 in the reference)
    q_norm: bool = False  # divide the critic's TD target by its batch std (FQL setting: off)
    grad_clip: float = 5.0  # global-norm clip of each optimizer's gradients (FQL setting 5); 0 turns it off
    ema_tau: float = 0.005  # EMA rate of the actor copy that teaches consistency and samples next actions
    ema_every: int = 5  # the EMA moves on updates whose index (from 0) is a multiple of this
    ema_start: int = 1000  # ... and at least this; until then the EMA keeps the actor's initial weights
    # N ramps 2 → 150 over this many updates, then restarts: the reference computes it within each `train()`
    # call of 50 epochs × 1000 steps. Set it to the run's offline steps for one global ramp instead.
    discretization_period: int = 50_000
    num_samples: int = 50  # candidate actions per state when acting

    def __post_init__(self) -> None:
        if self.time_dim % 2 or self.time_dim < 4:
            raise ValueError(f"time_dim must be an even integer >= 4 (sin and cos halves), got {self.time_dim}")


def sinusoidal_embedding(times: jax.Array, dim: int) -> jax.Array:
    """[sin(t·f), cos(t·f)] with f_k = 10000^(−k/(dim/2 − 1)), k < dim/2: the reference's `SinusoidalPosEmb`."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) / (half - 1) * jnp.arange(half))
    angles = times * freqs  # (..., 1) × (half,)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ConsistencyNet(nn.Module):
    """F_θ(s, x, t): the raw t (not scaled) embedded, then an MLP over [x, t_emb, s] (reference agents/model.py
    `MLP`)."""

    hidden_dims: Sequence[int]
    action_dim: int
    time_dim: int = 16

    @nn.compact
    def __call__(self, observations: jax.Array, x: jax.Array, times: jax.Array) -> jax.Array:
        embedding = sinusoidal_embedding(times, self.time_dim)
        t_emb = MLP((2 * self.time_dim, self.time_dim), activation="mish")(embedding)
        inputs = jnp.concatenate([x, t_emb, observations], axis=-1)
        return MLP((*self.hidden_dims, self.action_dim), activation="mish")(inputs)


def c_skip(t: jax.Array) -> jax.Array:
    """σ_d² / ((t − ε)² + σ_d²): 1 at t = ε."""
    return SIGMA_DATA**2 / ((t - EPS) ** 2 + SIGMA_DATA**2)


def c_out(t: jax.Array) -> jax.Array:
    """σ_d (t − ε) / √(t² + σ_d²): 0 at t = ε."""
    return SIGMA_DATA * (t - EPS) / jnp.sqrt(t**2 + SIGMA_DATA**2)


def consistency_fn(net: NetFn, x: jax.Array, t: jax.Array) -> jax.Array:
    """f(s, x, t) = c_skip(t)·x + c_out(t)·F(s, x, t); no input scaling c_in and no tanh, as the reference."""
    return c_skip(t) * x + c_out(t) * net(x, t)


def num_scales(step: jax.Array, period: int) -> jax.Array:
    """N = ⌈√(k(150² − 2²)/K + 2²) − 1⌉ + 1 with k = step mod K, K = `period` (consistency models Eq. 25 as
    the reference computes it; k restarts every K updates)."""
    k = (step % period).astype(jnp.float32)
    ramp = k * (FINAL_SCALES**2 - INITIAL_SCALES**2) / period + INITIAL_SCALES**2
    return (jnp.ceil(jnp.sqrt(ramp) - 1) + 1).astype(jnp.int32)


def karras_boundary(index: jax.Array, scales: jax.Array) -> jax.Array:
    """b_i = (ε^{1/ρ} + i/(N − 1)·(T^{1/ρ} − ε^{1/ρ}))^ρ, b_0 = ε and b_{N−1} = T, for a traced N (no array of
    length N is built)."""
    lo, hi = EPS ** (1 / RHO), T_MAX ** (1 / RHO)
    return (lo + index / (scales - 1) * (hi - lo)) ** RHO


def consistency_loss(
    net: NetFn, teacher: NetFn, actions: jax.Array, noise: jax.Array, index: jax.Array, scales: jax.Array
) -> jax.Array:
    """Scaled consistency-training loss: mean over (B, d) of 100/(t2 − t1)·(f_θ(a + t2·z, t2) − sg f_EMA(a + t1·z,
    t1))², with t1 = b_n and t2 = b_{n+1} for the per-sample boundary index n (B, 1)."""
    t1, t2 = karras_boundary(index, scales), karras_boundary(index + 1, scales)
    prediction = consistency_fn(net, actions + t2 * noise, t2)
    target = jax.lax.stop_gradient(consistency_fn(teacher, actions + t1 * noise, t1))
    return jnp.mean(CONSISTENCY_WEIGHT / (t2 - t1) * (prediction - target) ** 2)


def consistency_sample(net: NetFn, key: jax.Array, shape: tuple[int, ...], steps: int) -> jax.Array:
    """Multistep consistency sampling as the reference: x ~ 80·N(0, I), a = f(x, t_0), then for each next level t,
    a = f(a + √(t² − ε²)·z, t), over t = linspace(2, 80, steps) reversed; clipped to [−1, 1]. Differentiable."""
    levels = np.linspace(SAMPLING_T_MIN, T_MAX, steps)[::-1]
    key, init_key = jax.random.split(key)
    actions = T_MAX * jax.random.normal(init_key, shape)
    for i, t in enumerate(levels):  # unrolled: `steps` is static and small (2)
        if i > 0:
            key, noise_key = jax.random.split(key)
            actions = actions + math.sqrt(t**2 - EPS**2) * jax.random.normal(noise_key, shape)
        actions = consistency_fn(net, actions, jnp.full((*shape[:-1], 1), t, dtype=actions.dtype))
    return jnp.clip(actions, -1.0, 1.0)


def _networks(config: CACConfig, act_dim: int) -> tuple[Critic, ConsistencyNet]:
    critic = Critic(config.value_hidden_dims, layer_norm=False, num_ensembles=2, activation="mish")
    return critic, ConsistencyNet(config.actor_hidden_dims, act_dim, config.time_dim)


def _optimizers(config: CACConfig) -> dict[str, optax.GradientTransformation]:
    """One Adam per network, each clipping its own gradients to a global norm first (torch's `clip_grad_norm_` on
    each parameter set)."""

    def adam(lr: float) -> optax.GradientTransformation:
        if config.grad_clip > 0:
            return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(lr))
        return optax.adam(lr)

    return {"critic": adam(config.critic_lr), "actor": adam(config.actor_lr)}


def sample_actions(
    config: CACConfig, actor_params: dict, observations: jax.Array, key: jax.Array, act_dim: int
) -> jax.Array:
    """One consistency-policy action per observation (…, obs_dim) → (…, act_dim)."""
    _, actor = _networks(config, act_dim)

    def net(x: jax.Array, t: jax.Array) -> jax.Array:
        return actor.apply(actor_params, observations, x, t)

    return consistency_sample(net, key, (*observations.shape[:-1], act_dim), config.sampling_steps)


def init(config: CACConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise the consistency policy and the critic; the EMA policy and the target critic start as copies (the
    reference's `deepcopy`)."""
    critic, actor = _networks(config, act_dim)
    rng, critic_key, actor_key = jax.random.split(key, 3)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {"critic": critic.init(critic_key, obs, act), "actor": actor.init(actor_key, obs, act, t)}
    opt_state = {name: tx.init(params[name]) for name, tx in _optimizers(config).items()}
    target_params = {"critic": params["critic"], "actor": params["actor"]}
    return new_state(params, target_params, opt_state, rng, act_dim)


def critic_loss(
    config: CACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Sum over the 2 heads of the TD MSE; the target takes, per target head, the max over EMA-actor samples at s′,
    then the min over heads (one sample and the min without `max_q_backup`)."""
    act_dim = batch["actions"].shape[-1]
    critic, _ = _networks(config, act_dim)
    samples = config.backup_samples if config.max_q_backup else 1
    next_obs = batch["next_observations"]
    next_obs = jnp.broadcast_to(next_obs[:, None, :], (next_obs.shape[0], samples, next_obs.shape[-1]))
    next_actions = sample_actions(config, target_params["actor"], next_obs, key, act_dim)
    next_q = critic.apply(target_params["critic"], next_obs, next_actions).max(axis=-1).min(axis=0)
    target_q = jax.lax.stop_gradient(batch["rewards"] + config.discount * batch["masks"] * next_q)
    if config.q_norm:
        # The reference normalises the critic's *target* by its batch std (torch's unbiased std).
        target_q = target_q / (jnp.std(target_q, ddof=1) + 1e-6)
    q = critic.apply(params["critic"], batch["observations"], batch["actions"])
    loss = jnp.sum(jnp.mean((q - target_q) ** 2, axis=1))
    return loss, {
        "critic_loss": loss,
        "q_mean": q.mean(),
        "q_max": q.max(),
        "q_min": q.min(),
        "target_q_mean": target_q.mean(),
    }


def actor_loss(
    config: CACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array, scales: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Scaled consistency loss (EMA teacher) + η·Q loss; the Q loss takes a random head i and divides by the frozen
    mean |Q_j| of the other head, j ≠ i (always, whatever `q_norm` says). The critic is frozen."""
    obs, actions = batch["observations"], batch["actions"]
    critic, actor = _networks(config, actions.shape[-1])
    index_key, noise_key, sample_key, head_key = jax.random.split(key, 4)

    def net(actor_params: dict) -> NetFn:
        return lambda x, t: actor.apply(actor_params, obs, x, t)

    # torch.randint(0, N − 1): n ∈ {0, …, N − 2}, so (b_n, b_{n+1}) is one of the N − 1 adjacent pairs.
    index = jax.random.randint(index_key, (*actions.shape[:-1], 1), 0, scales - 1)
    noise = jax.random.normal(noise_key, actions.shape)
    # The EMA policy is the teacher (its output is stop-gradiented inside the loss).
    cons_loss = consistency_loss(net(params["actor"]), net(target_params["actor"]), actions, noise, index, scales)

    # The action carries gradient through every consistency evaluation; the critic is a constant here.
    policy_actions = sample_actions(config, params["actor"], obs, sample_key, actions.shape[-1])
    qs = critic.apply(jax.lax.stop_gradient(params["critic"]), obs, policy_actions)
    first = jax.random.bernoulli(head_key)  # the reference draws the head with np.random on the host
    q_i, q_j = jnp.where(first, qs[0], qs[1]), jnp.where(first, qs[1], qs[0])
    q_loss = -q_i.mean() / jax.lax.stop_gradient(jnp.abs(q_j).mean())

    loss = cons_loss + config.eta * q_loss
    return loss, {
        "actor_loss": loss,
        "consistency_loss": cons_loss,
        "q_loss": q_loss,
        "q": qs.mean(),
        "mse": jnp.mean((jax.lax.stop_gradient(policy_actions) - actions) ** 2),
        "num_scales": scales.astype(jnp.float32),
    }


def update(config: CACConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One training iteration of the reference, in its order: a critic step, then an actor step against the
    *updated* critic, then the EMA policy (every `ema_every` updates from `ema_start`) and the target critic, both
    toward the parameters after this update."""
    rng, critic_key, actor_key = jax.random.split(state.rng, 3)
    txs = _optimizers(config)
    targets = state.target_params
    scales = num_scales(state.step, config.discretization_period)

    params, opt_state, c_info = train_network(
        txs["critic"],
        state.params,
        state.opt_state,
        "critic",
        lambda p: critic_loss(config, p, targets, batch, critic_key),
    )
    params, opt_state, a_info = train_network(
        txs["actor"],
        params,
        opt_state,
        "actor",
        lambda p: actor_loss(config, p, targets, batch, actor_key, scales),
    )

    ema_due = (state.step % config.ema_every == 0) & (state.step >= config.ema_start)
    moved = polyak(params["actor"], targets["actor"], config.ema_tau)
    ema_actor = jax.tree_util.tree_map(lambda new, old: jnp.where(ema_due, new, old), moved, targets["actor"])
    target_params = {"critic": polyak(params["critic"], targets["critic"], config.tau), "actor": ema_actor}

    metrics = {(k if k.startswith("grad/") else f"critic/{k}"): v for k, v in c_info.items()}
    metrics |= {(k if k.startswith("grad/") else f"actor/{k}"): v for k, v in a_info.items()}
    new = state.replace(params=params, target_params=target_params, opt_state=opt_state, step=state.step + 1)
    return new.replace(rng=rng), metrics


def act(
    config: CACConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """`num_samples` actions per state from the online policy, scored by the min of the target critic's heads; one
    is *sampled* with probability softmax(Q) (temperature 1, raw Q), as the reference's `sample_action`.

    `deterministic` is ignored: the reference has no deterministic mode and evaluates with this sampling too
    (docs/algorithms.md#cac).
    """
    del deterministic
    critic, _ = _networks(config, state.act_dim)
    sample_key, choice_key = jax.random.split(key)
    obs_n = jnp.broadcast_to(
        observations[..., None, :], (*observations.shape[:-1], config.num_samples, observations.shape[-1])
    )
    candidates = sample_actions(config, state.params["actor"], obs_n, sample_key, state.act_dim)
    q = critic.apply(state.target_params["critic"], obs_n, candidates).min(axis=0)
    choice = jax.random.categorical(choice_key, q, axis=-1)
    return jnp.take_along_axis(candidates, choice[..., None, None], axis=-2).squeeze(-2)
