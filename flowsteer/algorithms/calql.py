"""Cal-QL: conservative Q-learning whose regulariser never pushes a policy action's value below the Monte-Carlo
return of the data (Nakamoto et al. 2023, "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online
Fine-Tuning", arXiv 2303.05479, Eq. 4.1 and Alg. 1; reference nakamotoo/Cal-QL JaxCQL/conservative_sac.py and
replay_buffer.py; docs/algorithms.md#cal-ql).

One update computes four losses, each for its own parameters (the reference's `value_and_multi_grad`):
- policy: mean(α·log π(ã|s) − min(Q1, Q2)(s, ã)), ã ~ π(s) reparameterised;
- temperature: −log α·mean(log π + H_target), H_target = −|A|;
- each critic head: Bellman error against the max-backup target, plus the CQL regulariser
  α·(T·logsumexp(importance-sampled Q's of 30 actions / T) − Q(s, a)), where the Q's of the policy-sampled actions
  are first raised to the episode's Monte-Carlo return G (the calibration);
- Lagrange mode: the multiplier α′ tuned so the regulariser's gap meets β.
Here they are summed into one loss; `stop_gradient` makes each loss reach only its own parameters, and
`optax.multi_transform` gives the policy and temperature their learning rate and the critic and α′ theirs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowsteer.algorithms import sac
from flowsteer.algorithms.columns import EpisodeColumn
from flowsteer.algorithms.networks import tanh_gaussian_sample
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, optimizer_step, polyak

TAILS = ("constant_failure", "bootstrap_last", "truncated")
# Which learning rate each parameter set gets: the reference's policy and temperature share `policy_lr`, the
# two Q networks and the Lagrange multiplier use `qf_lr`.
GROUPS = {"policy": "policy", "log_alpha": "policy", "critic": "critic", "log_alpha_prime": "critic"}


@dataclass(frozen=True)
class CalQLConfig:
    """Cal-QL hyperparameters: the reference's defaults (nakamotoo/Cal-QL at ac6eafe, JaxCQL/conservative_sac.py and
    its antmaze script) where it has them. Network sizes, reward scale, the MC-return tail rule and the online mix
    are UNVERIFIED for OGBench: the FQL paper does not say what it ran (docs/algorithms.md#cal-ql)."""

    policy_lr: float = 1e-4  # Adam learning rate of the policy and the temperature
    qf_lr: float = 3e-4  # Adam learning rate of the Q networks and the Lagrange multiplier
    batch_size: int = 256  # transitions per update (online: half dataset, half online, see balanced_sampling)
    actor_hidden_dims: tuple[int, ...] = (256, 256)  # policy MLP: the reference's antmaze script (UNVERIFIED here)
    value_hidden_dims: tuple[int, ...] = (256, 256, 256, 256)  # each Q MLP: the antmaze script (UNVERIFIED here)
    discount: float = 0.99  # γ (0.995 on the long-horizon datasets: presets)
    tau: float = 0.005  # Polyak rate of the target Qs, from the post-step parameters as the reference
    target_entropy: float | None = None  # None: −|A| (the reference replaces its 0.0 default by −prod(action shape))
    backup_entropy: bool = False  # subtract α·log π of the backed-up next action (reference default: no)
    cql_n_actions: int = 10  # sampled actions per state for each of the three CQL action sets and the max backup
    cql_importance_sample: bool = True  # importance-sampled logsumexp (data Q not in the set); reference default
    cql_temp: float = 1.0  # T of the logsumexp
    cql_max_target_backup: bool = True  # back up the max over cql_n_actions next actions (reference default)
    cql_weight: float = 5.0  # α of the fixed mode, or w of the Lagrange mode (the reference's cql_min_q_weight)
    cql_lagrange: bool = False  # tune α′ so the CQL gap meets cql_target_action_gap
    cql_target_action_gap: float = 0.8  # β of the Lagrange mode (the reference's antmaze script: 0.8)
    cql_clip_diff_min: float | None = None  # clip of (logsumexp − Q(s, a)) per sample; None: no clip (reference)
    cql_clip_diff_max: float | None = None
    calibrated: bool = True  # Cal-QL's lower bound max(Q, G); False is plain CQL
    # MC return after the last success of a trajectory (UNVERIFIED for OGBench): 'constant_failure' (a tail of
    # one constant reward r gets r/(1 − γ), the reference's rule for all-failure episodes; other tails the
    # truncated sum), 'bootstrap_last' (every tail continues with r_last/(1 − γ)) or 'truncated' (plain sum).
    mc_tail: Literal["constant_failure", "bootstrap_last", "truncated"] = "constant_failure"
    # r ← reward_scale·r + reward_bias before the TD target and the MC returns. The reference rescales D4RL
    # rewards to ±5 (antmaze ×10 − 5); no source says what OGBench needs, so the default leaves rewards as they are.
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    # Online batches: half dataset, half online transitions (the reference's scripts: mixing_ratio 0.5). Whether
    # the FQL paper mixed this way is UNVERIFIED. False: uniform over the dataset followed by the online rows.
    balanced_sampling: bool = True

    def __post_init__(self) -> None:
        if self.mc_tail not in TAILS:
            raise ValueError(f"mc_tail must be one of {list(TAILS)}, got {self.mc_tail!r}")
        low, high = self.cql_clip_diff_min, self.cql_clip_diff_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"cql_clip_diff_min ({low}) must not exceed cql_clip_diff_max ({high})")


def balanced_sampling(config: CalQLConfig) -> bool:
    return config.balanced_sampling


# ---------------------------------------------------------------- Monte-Carlo returns G


def mc_returns(config: CalQLConfig, episode: Mapping[str, np.ndarray]) -> np.ndarray:
    """G_t = r_t + γ·mask_t·G_{t+1} over one trajectory, on scaled rewards (docs/algorithms.md#cal-ql).

    done = 1 − mask (success), not the trajectory end, so G restarts at every success, where r = 0 and mask = 0.
    What follows the trajectory's last row matters only for the tail after its last success; `mc_tail` says.
    """
    rewards = np.asarray(episode["rewards"], np.float64) * config.reward_scale + config.reward_bias
    masks = np.asarray(episode["masks"], np.float64)
    gamma = config.discount
    successes = np.flatnonzero(masks < 0.5)
    tail = rewards[successes[-1] + 1 :] if successes.size else rewards
    after = 0.0
    if tail.size and config.mc_tail == "bootstrap_last":
        after = tail[-1] / (1.0 - gamma)
    elif tail.size and config.mc_tail == "constant_failure" and np.all(tail == tail[0]):
        after = tail[0] / (1.0 - gamma)  # never succeeding: the reference's r_neg/(1 − γ)
    returns = np.empty_like(rewards)
    value = after
    for t in range(len(rewards) - 1, -1, -1):
        value = rewards[t] + gamma * masks[t] * value
        returns[t] = value
    return returns.astype(np.float32)


# Rows of an online episode that has not ended hold −inf, so max(Q, G) = Q: no bound until the episode ends and its
# returns are written (the reference only ever stores whole episodes).
EPISODE_COLUMNS = (EpisodeColumn("mc_returns", mc_returns, placeholder=-math.inf),)


# ---------------------------------------------------------------- networks (the reference's, not FQL's)


class OrthogonalMLP(nn.Module):
    """Dense → ReLU on every hidden layer, orthogonal kernels (gain √2; 0.01 on the output layer), zero biases, no
    LayerNorm: the reference's `FullyConnectedNetwork` with orthogonal init."""

    hidden_dims: Sequence[int]
    output_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_dims:
            x = nn.relu(nn.Dense(size, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))(x))
        return nn.Dense(self.output_dim, kernel_init=nn.initializers.orthogonal(1e-2))(x)


class TwinQ(nn.Module):
    """Two independent Q(s, a) networks, output (2, ...)."""

    hidden_dims: Sequence[int]

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        heads = nn.vmap(
            OrthogonalMLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
            axis_size=2,
        )  # fmt: skip
        return heads(self.hidden_dims, 1)(jnp.concatenate([observations, actions], axis=-1)).squeeze(-1)


class TanhGaussianPolicy(nn.Module):
    """The MLP outputs [mean, raw log-std]; log σ = m·raw + b with learnable scalars m (init 1) and b (init −1),
    clipped to [−20, 2] (the reference's `TanhGaussianPolicy`)."""

    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = OrthogonalMLP(self.hidden_dims, 2 * self.action_dim)(observations)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        multiplier = self.param("log_std_multiplier", nn.initializers.constant(1.0), ())
        offset = self.param("log_std_offset", nn.initializers.constant(-1.0), ())
        return mean, jnp.clip(multiplier * raw_log_std + offset, -20.0, 2.0)


def sample_actions(
    config: CalQLConfig, policy_params: dict, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, jax.Array]:
    """(a, log π(a|s)) for every observation (any leading shape), reparameterised."""
    mean, log_std = TanhGaussianPolicy(config.actor_hidden_dims, act_dim).apply(policy_params, observations)
    return tanh_gaussian_sample(mean, log_std, key)


def _repeat(x: jax.Array, n: int) -> jax.Array:
    """(B, d) → (B, n, d)."""
    return jnp.repeat(x[:, None, :], n, axis=1)


def target_entropy(config: CalQLConfig, act_dim: int) -> float:
    return -float(act_dim) if config.target_entropy is None else config.target_entropy


def init(config: CalQLConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Policy, two Qs (+ target copies), log α (init 0: α = 1) and log α′ (init 1.0, as the reference)."""
    rng, critic_key, policy_key = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    params = {
        "policy": TanhGaussianPolicy(config.actor_hidden_dims, act_dim).init(policy_key, obs),
        "critic": TwinQ(config.value_hidden_dims).init(critic_key, obs, act),
        "log_alpha": jnp.zeros((), jnp.float32),
        "log_alpha_prime": jnp.ones((), jnp.float32),
    }
    return new_state(params, {"critic": params["critic"]}, optimizer(config).init(params), rng, act_dim)


def optimizer(config: CalQLConfig) -> optax.GradientTransformation:
    """Adam per parameter set with its group's learning rate (Adam acts per element, so one Adam over the two Qs
    equals the reference's Adam per Q)."""

    def labels(params: dict) -> dict:
        return {name: jax.tree.map(lambda _, group=GROUPS[name]: group, p) for name, p in params.items()}

    return optax.multi_transform({"policy": optax.adam(config.policy_lr), "critic": optax.adam(config.qf_lr)}, labels)


# ---------------------------------------------------------------- losses


def policy_losses(
    config: CalQLConfig, params: dict, batch: Batch, key: jax.Array, act_dim: int
) -> tuple[jax.Array, jax.Array, Metrics]:
    """(policy loss, temperature loss, metrics). The policy climbs min(Q1, Q2) with the Qs and α frozen; the
    temperature loss sees log π frozen."""
    frozen = jax.lax.stop_gradient(params)
    obs = batch["observations"]
    actions, log_prob = sample_actions(config, params["policy"], obs, key, act_dim)
    q = TwinQ(config.value_hidden_dims).apply(frozen["critic"], obs, actions).min(axis=0)
    alpha = sac.temperature(frozen["log_alpha"])
    policy_loss = jnp.mean(alpha * log_prob - q)
    alpha_loss = -params["log_alpha"] * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy(config, act_dim))
    return (
        policy_loss,
        alpha_loss,
        {
            "policy/policy_loss": policy_loss,
            "policy/q": q.mean(),
            "policy/entropy": -log_prob.mean(),
            "temperature/alpha": alpha,
            "temperature/alpha_loss": alpha_loss,
        },
    )


def td_target(config: CalQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array) -> jax.Array:
    """y = r + γ·mask·max_k min(Q̄1, Q̄2)(s′, a′_k), a′_k ~ π(s′) from the current (frozen) policy, k ≤ n (one sample
    without the max backup); minus α·log π of the chosen a′ with backup_entropy."""
    frozen = jax.lax.stop_gradient(params)
    act_dim = batch["actions"].shape[-1]
    n = config.cql_n_actions if config.cql_max_target_backup else 1
    next_obs = _repeat(batch["next_observations"], n)
    next_actions, next_log_prob = sample_actions(config, frozen["policy"], next_obs, key, act_dim)
    next_qs = TwinQ(config.value_hidden_dims).apply(target_params["critic"], next_obs, next_actions).min(axis=0)
    best = jnp.argmax(next_qs, axis=-1)[:, None]
    next_q = jnp.take_along_axis(next_qs, best, axis=-1)[:, 0]
    if config.backup_entropy:
        next_q = next_q - sac.temperature(frozen["log_alpha"]) * jnp.take_along_axis(next_log_prob, best, -1)[:, 0]
    rewards = batch["rewards"] * config.reward_scale + config.reward_bias
    return jax.lax.stop_gradient(rewards + config.discount * batch["masks"] * next_q)


def cql_gap(
    config: CalQLConfig, params: dict, batch: Batch, q_data: jax.Array, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """Per head, mean_b clip(T·logsumexp(set/T) − Q(s, a)): the set holds Q at n uniform actions (minus their log
    density), at n actions sampled from π(s) and at n sampled from π(s′), all evaluated at s (the latter two
    minus their log π). Cal-QL raises those two policy sets, before subtracting log π, to the MC return G."""
    frozen = jax.lax.stop_gradient(params)
    obs, act_dim, n = batch["observations"], batch["actions"].shape[-1], config.cql_n_actions
    rand_key, current_key, next_key = jax.random.split(key, 3)
    obs_n = _repeat(obs, n)
    random_actions = jax.random.uniform(rand_key, (obs.shape[0], n, act_dim), minval=-1.0, maxval=1.0)
    current_actions, current_log_prob = sample_actions(config, frozen["policy"], obs_n, current_key, act_dim)
    next_actions, next_log_prob = sample_actions(
        config, frozen["policy"], _repeat(batch["next_observations"], n), next_key, act_dim
    )  # sampled at s′ but evaluated at s: CQL's choice, kept by Cal-QL
    critic = TwinQ(config.value_hidden_dims)
    q_random = critic.apply(params["critic"], obs_n, random_actions)  # (2, B, n)
    q_current = critic.apply(params["critic"], obs_n, current_actions)
    q_next = critic.apply(params["critic"], obs_n, next_actions)
    metrics: Metrics = {}
    if config.calibrated:
        bound = batch["mc_returns"][None, :, None]
        # How often the bound binds (logging only, as the reference's `bound_rate`).
        metrics = {
            "calql/bound_rate_current": (q_current < bound).mean(),
            "calql/bound_rate_next": (q_next < bound).mean(),
        }
        q_current, q_next = jnp.maximum(q_current, bound), jnp.maximum(q_next, bound)
    if config.cql_importance_sample:
        random_density = act_dim * math.log(0.5)  # log of the uniform density on [−1, 1]^d
        entries = [q_random - random_density, q_next - next_log_prob[None], q_current - current_log_prob[None]]
    else:
        entries = [q_random, q_data[..., None], q_next, q_current]
    ood = config.cql_temp * jax.nn.logsumexp(jnp.concatenate(entries, axis=-1) / config.cql_temp, axis=-1)
    low = -jnp.inf if config.cql_clip_diff_min is None else config.cql_clip_diff_min
    high = jnp.inf if config.cql_clip_diff_max is None else config.cql_clip_diff_max
    gap = jnp.clip(ood - q_data, low, high).mean(axis=-1)  # (2,)
    return gap, metrics | {"cql/ood_q": ood.mean(), "cql/q_random": q_random.mean(), "cql/q_current": q_current.mean()}


def critic_losses(
    config: CalQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, jax.Array, Metrics]:
    """(Σ_i Bellman_i + C_i, Lagrange loss of α′, metrics). C_i = α·gap_i (fixed), or α′·w·(gap_i − β) with α′
    frozen (Lagrange), whose loss −½Σ_i α′·w·(gap_i − β) sees the gaps frozen; 0 without Lagrange."""
    target_key, cql_key = jax.random.split(key)
    y = td_target(config, params, target_params, batch, target_key)
    q_data = TwinQ(config.value_hidden_dims).apply(params["critic"], batch["observations"], batch["actions"])
    bellman = jnp.mean((q_data - y) ** 2, axis=-1)  # (2,)
    gap, metrics = cql_gap(config, params, batch, q_data, cql_key)
    alpha_prime = jnp.clip(jnp.exp(params["log_alpha_prime"]), 0.0, 1e6)
    if config.cql_lagrange:
        penalty = jax.lax.stop_gradient(alpha_prime) * config.cql_weight * (gap - config.cql_target_action_gap)
        alpha_prime_loss = -0.5 * jnp.sum(
            alpha_prime * config.cql_weight * (jax.lax.stop_gradient(gap) - config.cql_target_action_gap)
        )
    else:
        penalty = config.cql_weight * gap
        alpha_prime_loss = jnp.zeros(())
    loss = jnp.sum(bellman + penalty)
    return (
        loss,
        alpha_prime_loss,
        metrics
        | {
            "critic/critic_loss": loss,
            "critic/bellman_loss": bellman.mean(),
            "critic/q_mean": q_data.mean(),
            "critic/target_q": y.mean(),
            "cql/gap": gap.mean(),
            "cql/penalty": penalty.mean(),
            "cql/alpha_prime": alpha_prime,
            "cql/alpha_prime_loss": alpha_prime_loss,
        },
    )


def losses(
    config: CalQLConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array, act_dim: int
) -> tuple[dict[str, jax.Array], Metrics]:
    """Each loss under the name of the only parameters it trains (the reference's per-loss gradient routing)."""
    policy_key, critic_key = jax.random.split(key)
    policy_loss, alpha_loss, p_info = policy_losses(config, params, batch, policy_key, act_dim)
    critic_loss, alpha_prime_loss, c_info = critic_losses(config, params, target_params, batch, critic_key)
    named = {"policy": policy_loss, "log_alpha": alpha_loss, "critic": critic_loss, "log_alpha_prime": alpha_prime_loss}
    return named, p_info | c_info


def update(config: CalQLConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One step of every loss on its own parameters, then Polyak of the target Qs toward the post-step Qs."""
    rng, key = jax.random.split(state.rng)

    def loss_fn(params: dict) -> tuple[jax.Array, Metrics]:
        named, metrics = losses(config, params, state.target_params, batch, key, state.act_dim)
        return sum(named.values()), metrics

    params, opt_state, metrics = optimizer_step(optimizer(config), state.params, state.opt_state, loss_fn)
    targets = {"critic": polyak(params["critic"], state.target_params["critic"], config.tau)}
    new = state.replace(params=params, target_params=targets, opt_state=opt_state, step=state.step + 1, rng=rng)
    return new, metrics


def act(
    config: CalQLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Online collection samples from π; evaluation takes tanh(mean) (the reference's deterministic sampler)."""
    if deterministic:
        policy = TanhGaussianPolicy(config.actor_hidden_dims, state.act_dim)
        mean, _ = policy.apply(state.params["policy"], observations)
        return jnp.clip(jnp.tanh(mean), -1.0, 1.0)
    actions, _ = sample_actions(config, state.params["policy"], observations, key, state.act_dim)
    return jnp.clip(actions, -1.0, 1.0)
