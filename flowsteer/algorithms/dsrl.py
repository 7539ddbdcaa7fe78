"""What DSRL-NA and DSRL-SAC share: a frozen base policy, and SAC over the noise that it decodes.

Diffusion steering via reinforcement learning (DSRL; Wagenmaker et al. 2025, "Steering Your Diffusion Policy with
Latent Space Reinforcement Learning", arXiv 2506.15799; docs/algorithms.md#dsrl):

- The base policy π_dp(s, w) is a BC flow policy read as a deterministic map from the noise w that starts its
  Euler integration to an action a. DSRL never changes it, so every action stays on what the base learned.
  Here: `base_net`, `decode_noise`, `base_step` (its flow-BC pretraining), `base_policy` / `with_base_policy`
  (lending it to, and installing it from, another run).
- The latent-noise policy π^W(w | s) is trained by SAC in noise space: a tanh-Gaussian scaled by the noise bound
  m (`sample_noise`, `noise_mode`), an actor loss against a critic over (s, w) (`actor_loss`), an entropy
  temperature α tuned toward a target entropy (`temperature_loss`), and the soft value of the next state that
  both critics' TD targets use (`soft_value`). `policy_step` is one SAC actor step followed by one α step.

What differs is the critic that π^W climbs: DSRL-SAC learns Q(s, w) on stored noise (`dsrl_sac.py`); DSRL-NA learns
Q^A(s, a) on ordinary transitions and distils it into Q^W(s, w) (`dsrl_na.py`).
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms import sac
from flowsteer.algorithms.flow_bc import bc_flow_loss, decode, flow_net
from flowsteer.algorithms.networks import Critic, GaussianActor, VectorField, tanh_gaussian_sample
from flowsteer.algorithms.training import Batch, Metrics, TrainState, train_network


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
    actor_fc_scale: float
    log_std_min: float
    log_std_max: float
    deterministic_eval: bool
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
    if not config.log_std_min < config.log_std_max:
        raise ValueError(
            f"log_std_min ({config.log_std_min}) must be below log_std_max ({config.log_std_max}): they clip the "
            "noise policy's log-std"
        )


def optimizer(config: DSRLConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr)


# ---------------------------------------------------------------- the base policy π_dp(s, w)


def base_net(config: DSRLConfig, act_dim: int) -> VectorField:
    return flow_net(config.base_hidden_dims, config.base_layer_norm, act_dim)


def decode_noise(
    config: DSRLConfig, params: dict, target_params: dict, observations: jax.Array, noise: jax.Array
) -> jax.Array:
    """a = π_dp(s, w), with no gradient into the base. A base that keeps training is decoded through its slow
    EMA copy (`target_params['bc_flow']`; `use_target_latent` in ColinQiyangLi/qam agents/dsrl.py), so the
    noise space moves slowly."""
    if "bc_flow" not in params:
        raise ValueError(
            "this learner steers an external base policy (base_policy), which decodes outside JAX: act through "
            "flowsteer.workers.rollout, which decodes the chosen noise with it"
        )
    base = jax.lax.stop_gradient(target_params.get("bc_flow", params["bc_flow"]))
    return decode(base_net(config, noise.shape[-1]), base, observations, noise, config.flow_steps)


def base_step(
    config: DSRLConfig, params: dict, opt_state: dict, batch: Batch, key: jax.Array
) -> tuple[dict, dict, Metrics]:
    """One flow-matching (BC) step of the base on the batch's actions; only `params['bc_flow']` changes. On chunks,
    each position after an episode end inside its chunk is left out (QC's per-position mask; docs/algorithms.md)."""
    net = base_net(config, batch["actions"].shape[-1])

    def loss(p: dict) -> tuple[jax.Array, Metrics]:
        value = bc_flow_loss(net, p["bc_flow"], batch, key)  # per-position valid_steps mask on chunks
        return value, {"base/bc_flow_loss": value}

    return train_network(optimizer(config), params, opt_state, "bc_flow", loss)


def base_run(config: DSRLConfig) -> str | None:
    """The run directory whose BC flow is this learner's base, if it loads one."""
    return config.base_run


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
    """π^W's network: an MLP, then Dense heads for the mean and a state-dependent log-std, initialised at Xavier
    scale `actor_fc_scale` and clipped to [log_std_min, log_std_max] (each config says which reference its
    values follow)."""
    return GaussianActor(
        config.actor_hidden_dims,
        act_dim,
        layer_norm=config.actor_layer_norm,
        state_dependent_std=True,
        final_fc_init_scale=config.actor_fc_scale,
        log_std_min=config.log_std_min,
        log_std_max=config.log_std_max,
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


def choose_noise(
    config: DSRLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool
) -> jax.Array:
    """The noise policy's w inside [−m, m]^d: its mode, or a sample."""
    if deterministic:
        return noise_mode(config, state.params, observations, state.act_dim)
    return sample_noise(config, state.params, observations, key, state.act_dim)[0]


def base_noise(config: DSRLConfig, observations: jax.Array, key: jax.Array, act_dim: int) -> jax.Array:
    """The noise the base policy would draw on its own, w ~ N(0, I), clipped to [−m, m] (the unsteered base)."""
    noise = jax.random.normal(key, (*observations.shape[:-1], act_dim))
    return jnp.clip(noise, -config.noise_bound, config.noise_bound)


def steer(
    config: DSRLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool
) -> tuple[jax.Array, jax.Array]:
    """(a, w): the noise policy picks w inside [−m, m]^d, the base decodes it once into a."""
    noise = choose_noise(config, state, observations, key, deterministic)
    return decode_noise(config, state.params, state.target_params, observations, noise), noise


def act(
    config: DSRLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """a = π_dp(s, w) with w ~ π^W(s). Evaluation (`deterministic`) samples too, as both references evaluate
    (ajwagen/dsrl `deterministic_eval: False`; ColinQiyangLi/qam evaluation.py), unless the config sets
    `deterministic_eval`, which evaluates the mode w = m·tanh(μ(s))."""
    return steer(config, state, observations, key, deterministic and config.deterministic_eval)[0]


def temperature(params: dict) -> jax.Array:
    return jnp.exp(params["log_alpha"])


def target_entropy(config: DSRLConfig, act_dim: int) -> float:
    """The entropy the temperature steers toward; None means −0.5·dim(w) (FQL's SAC, QAM)."""
    return -0.5 * act_dim if config.target_entropy is None else config.target_entropy


def soft_value(config: DSRLConfig, params: dict, next_qs: jax.Array, next_log_prob: jax.Array) -> jax.Array:
    """V(s′) = agg_i Q̄_i(s′, ·) − [backup_entropy]·α·log π^W(w′|s′) over the (E, B) target heads, the bootstrap of
    both critics' TD targets. agg is min (q_agg='min': the official DSRL, SB3's clipped double Q) or mean − ρ·std
    (q_agg='mean', ρ = q_std_penalty: QAM's pessimistic backup, ColinQiyangLi/qam agents/dsrl.py critic_loss)."""
    if config.q_agg == "min":
        value = next_qs.min(axis=0)
    else:
        value = next_qs.mean(axis=0) - config.q_std_penalty * next_qs.std(axis=0)
    if config.backup_entropy:
        value = value - temperature(jax.lax.stop_gradient(params)) * next_log_prob
    return value


def actor_loss(
    config: DSRLConfig, params: dict, critic_name: str, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, Metrics]:
    """mean(α·log π^W(w|s) − Q(s, w)) with w reparameterised; Q is `params[critic_name]` (frozen) and α is frozen.
    Returns the loss and the entropy estimate −mean log π.

    The heads are aggregated by min (q_agg='min') or by their plain mean (q_agg='mean'), not by the target's
    mean − ρ·std: the official DSRL-NA uses one rule for both (`critic_backup_combine_type`, min or mean, in
    ajwagen/stable-baselines3-dsrl stable_baselines3/dsrl/dsrl.py `train`), while QAM's JAX DSRL, whose defaults
    dsrl_na follows, backs up mean − ρ·std but climbs the plain mean (ColinQiyangLi/qam agents/dsrl.py actor_loss)."""
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
    return sac.temperature_loss(params["log_alpha"], entropy, target_entropy(config, act_dim))


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
    config: DSRLConfig, obs_dim: int, act_dim: int, key: jax.Array, trainable_base: bool, external_base: bool = False
) -> tuple[dict, dict]:
    """Parameters of the base, the critic (on the input the variant chooses: see the callers), the noise policy
    and the temperature; target params hold the critic and, for a base that keeps training, its EMA copy. An
    external base (`external_base`) has no parameters here: it lives outside JAX and is never differentiated."""
    base_key, critic_key, policy_key = jax.random.split(key, 3)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {
        "critic": critic_net(config).init(critic_key, obs, act),
        "noise_policy": noise_policy_net(config, act_dim).init(policy_key, obs),
        "log_alpha": jnp.asarray(jnp.log(config.init_temperature), jnp.float32),
    }
    if not external_base:
        params = {"bc_flow": base_net(config, act_dim).init(base_key, obs, act, t)} | params
    targets = {"critic": params["critic"]} | ({"bc_flow": params["bc_flow"]} if trainable_base else {})
    return params, targets
