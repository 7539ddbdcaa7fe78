"""What DSRL-NA and DSRL-SAC share (Wagenmaker et al. 2025, diffusion steering via latent-noise RL; spec §10).

A pretrained BC flow policy π_dp(s, w) maps the noise w that starts its Euler integration to an action; DSRL
learns a policy π^W(w | s) over that noise and never changes π_dp, so every action stays on the base policy's
manifold. Shared here: the base policy (its network, how it is decoded, its pretraining step, installing one
from another run), and SAC over w: a tanh-Gaussian noise policy scaled by the noise bound, its entropy
temperature, and the soft TD target. `dsrl_na.py` and `dsrl_sac.py` are the two algorithms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.flow_bc import bc_flow_loss, decode, flow_net
from flowsteer.algorithms.networks import Critic, GaussianActor, VectorField, tanh_gaussian_sample
from flowsteer.algorithms.training import Batch, Metrics, TrainState, polyak, train_network


class DSRLConfig(Protocol):
    """The fields both DSRL configs have (see their dataclasses for comments and defaults)."""

    lr: float
    actor_hidden_dims: tuple[int, ...]
    value_hidden_dims: tuple[int, ...]
    layer_norm: bool
    actor_layer_norm: bool
    num_critics: int
    q_agg: str
    q_std_penalty: float
    discount: float
    noise_bound: float
    target_entropy: float | None
    backup_entropy: bool
    init_temperature: float
    base_hidden_dims: tuple[int, ...]
    base_layer_norm: bool
    flow_steps: int
    base_run: str | None


def check_config(config: DSRLConfig) -> None:
    """Reject values no run could use, with the field's name."""
    if config.q_agg not in ("mean", "min"):
        raise ValueError(f"q_agg must be 'mean' or 'min', got {config.q_agg!r}")
    if config.num_critics < 2:
        raise ValueError(f"num_critics must be >= 2 (an ensemble), got {config.num_critics}")
    if config.noise_bound <= 0:
        raise ValueError(f"noise_bound must be > 0, got {config.noise_bound}")


def optimizer(config: DSRLConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr)


# ---------------------------------------------------------------- the base policy π_dp(s, w)


def base_net(config: DSRLConfig, act_dim: int) -> VectorField:
    return flow_net(config.base_hidden_dims, config.base_layer_norm, act_dim)


def decode_noise(
    config: DSRLConfig, params: dict, target_params: dict, observations: jax.Array, noise: jax.Array
) -> jax.Array:
    """a = π_dp(s, w), with no gradient into the base. A base that keeps training is decoded through its slow
    EMA copy (`target_params['bc_flow']`, QAM's `use_target_latent`), so the noise space moves slowly."""
    base = jax.lax.stop_gradient(target_params.get("bc_flow", params["bc_flow"]))
    return decode(base_net(config, noise.shape[-1]), base, observations, noise, config.flow_steps)


def base_step(
    config: Any, params: dict, opt_state: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[dict, dict, dict, Metrics]:
    """One BC flow-matching step of the base on `batch`; its EMA copy (if it has one) follows with rate base_tau."""
    net = base_net(config, batch["actions"].shape[-1])

    def loss(p: dict) -> tuple[jax.Array, Metrics]:
        value = bc_flow_loss(net, p["bc_flow"], batch, key)
        return value, {"base/bc_flow_loss": value}

    params, opt_state, metrics = train_network(optimizer(config), params, opt_state, "bc_flow", loss)
    if "bc_flow" in target_params:
        target_params = {
            **target_params,
            "bc_flow": polyak(params["bc_flow"], target_params["bc_flow"], config.base_tau),
        }
    return params, opt_state, target_params, metrics


def base_policy(config: DSRLConfig, state: TrainState) -> tuple[VectorField, dict]:
    """The base this learner decodes with, lent to another DSRL run as its `base_run`."""
    return base_net(config, state.act_dim), state.target_params.get("bc_flow", state.params["bc_flow"])


def with_base_policy(config: DSRLConfig, state: TrainState, net: VectorField, base_params: dict) -> TrainState:
    """Install a pretrained base (and its EMA copy, if the base keeps training)."""
    if net != base_net(config, state.act_dim):
        raise ValueError(
            f"the base policy's network ({net.hidden_dims}, layer_norm={net.layer_norm}) differs from this "
            f"config's base_hidden_dims={config.base_hidden_dims}, base_layer_norm={config.base_layer_norm}; "
            "set those two to match the base run"
        )
    base_params = jax.tree_util.tree_map(jnp.asarray, base_params)
    targets = dict(state.target_params)
    if "bc_flow" in targets:
        targets["bc_flow"] = base_params
    return state.replace(params={**state.params, "bc_flow": base_params}, target_params=targets)


# ---------------------------------------------------------------- SAC over the noise w


def noise_policy_net(config: DSRLConfig, act_dim: int) -> GaussianActor:
    # FQL's SAC actor (spec §9): state-dependent log-std clipped to [−5, 2], output layers initialised at scale 0.01.
    return GaussianActor(
        config.actor_hidden_dims, act_dim, layer_norm=config.actor_layer_norm, state_dependent_std=True
    )


def critic_net(config: DSRLConfig) -> Critic:
    return Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=config.num_critics)


def sample_noise(
    config: DSRLConfig, params: dict, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, jax.Array]:
    """w = m·tanh(u), u ~ N(μ(s), σ(s)²), and log π of tanh(u). The log-density is that of the noise in the unit
    box (before the scale m), as in SB3, so a target entropy means the same for every noise bound."""
    mean, log_std = noise_policy_net(config, act_dim).apply(params["noise_policy"], observations)
    squashed, log_prob = tanh_gaussian_sample(mean, log_std, key)
    return config.noise_bound * squashed, log_prob


def noise_mode(config: DSRLConfig, params: dict, observations: jax.Array, act_dim: int) -> jax.Array:
    """The deterministic noise m·tanh(μ(s)) (temperature 0)."""
    mean, _ = noise_policy_net(config, act_dim).apply(params["noise_policy"], observations)
    return config.noise_bound * jnp.tanh(mean)


def steer(
    config: DSRLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool
) -> tuple[jax.Array, jax.Array]:
    """(a, w): the noise policy picks w inside [−m, m]^d, the base decodes it once into a."""
    if deterministic:
        noise = noise_mode(config, state.params, observations, state.act_dim)
    else:
        noise = sample_noise(config, state.params, observations, key, state.act_dim)[0]
    return decode_noise(config, state.params, state.target_params, observations, noise), noise


def aggregate(config: DSRLConfig, qs: jax.Array) -> jax.Array:
    """Target over the (E, B) critic heads: min (official DSRL), or mean − ρ·std (QAM; ρ = q_std_penalty)."""
    if config.q_agg == "min":
        return qs.min(axis=0)
    return qs.mean(axis=0) - config.q_std_penalty * qs.std(axis=0)


def temperature(params: dict) -> jax.Array:
    return jnp.exp(params["log_alpha"])


def target_entropy(config: DSRLConfig, act_dim: int) -> float:
    """The entropy the temperature steers toward; None means −0.5·dim(w) (FQL's SAC, QAM)."""
    return -0.5 * act_dim if config.target_entropy is None else config.target_entropy


def soft_td_target(
    config: DSRLConfig,
    params: dict,
    target_critic: dict,
    batch: Batch,
    key: jax.Array,
    critic_input: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """y = r + γ·mask·(agg_i Q̄_i(s′, x′) − [backup_entropy]·α·log π^W(w′|s′)), w′ ~ π^W(s′), x′ = critic_input(w′).

    Everything on the right is frozen. DSRL-SAC's critic reads w′ itself; DSRL-NA's action critic reads the
    decoded action π_dp(s′, w′)."""
    frozen = jax.lax.stop_gradient(params)
    next_obs = batch["next_observations"]
    next_noise, next_log_prob = sample_noise(config, frozen, next_obs, key, batch["actions"].shape[-1])
    next_q = aggregate(config, critic_net(config).apply(target_critic, next_obs, critic_input(next_noise)))
    if config.backup_entropy:
        next_q = next_q - temperature(frozen) * next_log_prob
    return batch["rewards"] + config.discount * batch["masks"] * next_q


def actor_loss(
    config: DSRLConfig, params: dict, critic_name: str, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, Metrics]:
    """mean(α·log π^W(w|s) − Q(s, w)) with w reparameterised; Q is `params[critic_name]` (frozen) aggregated over
    its heads by min (q_agg='min') or mean; α is frozen. Returns the loss and the entropy estimate −mean log π."""
    frozen = jax.lax.stop_gradient(params)
    noise, log_prob = sample_noise(config, params, observations, key, act_dim)
    qs = critic_net(config).apply(frozen[critic_name], observations, noise)
    q = qs.min(axis=0) if config.q_agg == "min" else qs.mean(axis=0)
    loss = jnp.mean(temperature(frozen) * log_prob - q)
    entropy = -jnp.mean(log_prob)
    return loss, {
        "noise_policy/actor_loss": loss,
        "noise_policy/q": q.mean(),
        "noise_policy/entropy": entropy,
        "noise_policy/noise_abs": jnp.abs(noise).mean(),
    }


def temperature_loss(config: DSRLConfig, params: dict, entropy: jax.Array, act_dim: int) -> tuple[jax.Array, Metrics]:
    """α·(H − H_target) with H frozen: α grows while the policy's entropy is below the target (FQL's SAC)."""
    alpha = temperature(params)
    loss = alpha * (jax.lax.stop_gradient(entropy) - target_entropy(config, act_dim))
    return loss, {"temperature/alpha": alpha, "temperature/alpha_loss": loss}


def policy_step(
    config: DSRLConfig,
    params: dict,
    opt_state: dict,
    critic_name: str,
    observations: jax.Array,
    key: jax.Array,
    act_dim: int,
) -> tuple[dict, dict, Metrics]:
    """One step of the noise policy against `critic_name`, then one of the temperature on the same policy's
    entropy (measured before the policy step, as SB3 does)."""
    tx = optimizer(config)
    new, opt_state, info = train_network(
        tx, params, opt_state, "noise_policy", lambda p: actor_loss(config, p, critic_name, observations, key, act_dim)
    )
    entropy = info["noise_policy/entropy"]
    new, opt_state, t_info = train_network(
        tx, new, opt_state, "log_alpha", lambda p: temperature_loss(config, p, entropy, act_dim)
    )
    return new, opt_state, info | t_info


def init_shared(
    config: DSRLConfig, obs_dim: int, act_dim: int, key: jax.Array, trainable_base: bool
) -> tuple[dict, dict]:
    """Parameters of the base, the critic (on the input the variant chooses: see the callers), the noise policy
    and the temperature; target params hold the critic and, for a base that keeps training, its EMA copy."""
    base_key, critic_key, policy_key = jax.random.split(key, 3)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {
        "bc_flow": base_net(config, act_dim).init(base_key, obs, act, t),
        "critic": critic_net(config).init(critic_key, obs, act),
        "noise_policy": noise_policy_net(config, act_dim).init(policy_key, obs),
        "log_alpha": jnp.asarray(jnp.log(config.init_temperature), jnp.float32),
    }
    targets = {"critic": params["critic"]} | ({"bc_flow": params["bc_flow"]} if trainable_base else {})
    return params, targets


def with_zeros(metrics: Metrics, names: Any) -> Metrics:
    """`metrics` completed with zeros for the other `names`: every update logs the same columns."""
    return {name: metrics.get(name, jnp.zeros((), jnp.float32)) for name in names}
