"""ReBRAC (Tarasov et al. 2023): TD3+BC with LayerNorm, separate actor and critic BC penalties and delayed
actor updates (ReBRAC paper Sec. 3), as in seohongpark/fql agents/rebrac.py; docs/algorithms.md#rebrac."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms.chunks import bootstrap_discount, td_loss
from flowsteer.algorithms.networks import Critic, GaussianActor
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, summed_loss_update

# Computed on every `actor_freq`-th update only; NaN on the others (a loss never computed is not a 0.0 loss).
ACTOR_METRICS = ("actor/actor_loss", "actor/q_loss", "actor/bc_loss", "actor/mse")


@dataclass(frozen=True)
class ReBRACConfig:
    """ReBRAC hyperparameters; defaults are the reference's `get_config()` (α's are set per task).

    Reference: seohongpark/fql agents/rebrac.py at 719d044; with `action_chunk` H > 1, QAM's chunked ReBRAC
    (ColinQiyangLi/qam agents/rebrac.py at f93efd2). Intentional divergences: the actor-frequency branch is a
    `lax.cond` inside the compiled update; no image encoder; over chunks the critic penalty stays, against the next
    dataset chunk (QAM's ReBRAC has none) (docs/algorithms.md#rebrac).
    """

    lr: float = 3e-4  # Adam learning rate, one optimizer over critic and actor
    batch_size: int = 256  # transitions per update
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # policy MLP
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the policy
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critic and target actor
    tanh_squash: bool = True  # act with tanh(mean)
    actor_fc_scale: float = 0.01  # init scale of the policy's output layer
    alpha_actor: float = 0.0  # α₁: actor BC penalty on ‖π(s) − a‖²
    alpha_critic: float = 0.0  # α₂: critic penalty on ‖a′ − a′_D‖² in the target
    actor_freq: int = 2  # the actor (and the targets) update every `actor_freq` steps
    actor_noise: float = 0.2  # std of the target-policy smoothing noise (and of the exploration noise)
    actor_noise_clip: float = 0.5  # clip of that noise
    action_chunk: int = 1  # H, actions per policy call: set from the run, not a hyperparameter (docs/chunking.md)


def _networks(config: ReBRACConfig, act_dim: int) -> tuple[Critic, GaussianActor]:
    critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
    actor = GaussianActor(
        config.actor_hidden_dims,
        act_dim,
        layer_norm=config.actor_layer_norm,
        const_std=True,
        final_fc_init_scale=config.actor_fc_scale,
    )
    return critic, actor


def _mode(config: ReBRACConfig, actor_params: dict, observations: jax.Array, act_dim: int) -> jax.Array:
    """The deterministic policy: tanh(mean) (or the mean without squashing)."""
    mean, _ = _networks(config, act_dim)[1].apply(actor_params, observations)
    return jnp.tanh(mean) if config.tanh_squash else mean


def _smoothing_noise(config: ReBRACConfig, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.clip(
        config.actor_noise * jax.random.normal(key, shape), -config.actor_noise_clip, config.actor_noise_clip
    )


def init(config: ReBRACConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise critic and actor; target critic and target actor start as copies."""
    critic, actor = _networks(config, act_dim)
    rng, critic_key, actor_key = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    params = {"critic": critic.init(critic_key, obs, act), "actor": actor.init(actor_key, obs)}
    target_params = {"critic": params["critic"], "actor": params["actor"]}
    return new_state(params, target_params, optax.adam(config.lr).init(params), rng, act_dim)


def critic_loss(
    config: ReBRACConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """TD loss: a′ = clip(target actor + clipped noise), min over target heads minus α₂‖a′ − a′_D‖²
    (docs/pitfalls.md pitfall 6). Over chunks: γ^H, the `valid` mask, and a′_D the dataset chunk that follows
    (the batch's `next_actions`, docs/chunking.md)."""
    act_dim = batch["actions"].shape[-1]
    critic, _ = _networks(config, act_dim)
    next_mode = _mode(config, target_params["actor"], batch["next_observations"], act_dim)
    next_actions = jnp.clip(next_mode + _smoothing_noise(config, key, next_mode.shape), -1.0, 1.0)
    next_q = critic.apply(target_params["critic"], batch["next_observations"], next_actions).min(0)
    next_q = next_q - config.alpha_critic * jnp.sum((next_actions - batch["next_actions"]) ** 2, axis=-1)
    discount = bootstrap_discount(config.discount, config.action_chunk)
    target_q = batch["rewards"] + discount * batch["masks"] * next_q
    q = critic.apply(params["critic"], batch["observations"], batch["actions"])
    loss = td_loss(q, target_q, batch)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "q_max": q.max(), "q_min": q.min()}


def actor_loss(config: ReBRACConfig, params: dict, batch: Batch) -> tuple[jax.Array, Metrics]:
    """−mean(λ·min_i Q_i(s, π(s))) + α₁·mean‖π(s) − a‖², λ = 1/mean|Q| frozen; the critic is frozen. Over chunks
    a chunk crossing an episode end is dropped from the BC term, as QAM does (ColinQiyangLi/qam agents/rebrac.py)."""
    act_dim = batch["actions"].shape[-1]
    critic, _ = _networks(config, act_dim)
    actions = _mode(config, params["actor"], batch["observations"], act_dim)
    q = critic.apply(jax.lax.stop_gradient(params["critic"]), batch["observations"], actions).min(0)
    mse = jnp.sum((actions - batch["actions"]) ** 2, axis=-1)
    if "valid" in batch:
        mse = mse * batch["valid"]
    q_loss = -(jax.lax.stop_gradient(1.0 / jnp.abs(q).mean()) * q).mean()
    bc_loss = config.alpha_actor * mse.mean()
    loss = q_loss + bc_loss
    return loss, {"actor_loss": loss, "q_loss": q_loss, "bc_loss": bc_loss, "mse": mse.mean()}


def update(config: ReBRACConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on the critic loss, plus the actor loss on every `actor_freq`-th update (the reference's
    `full_update = i % actor_freq == 0`, i counted from 1). On critic-only steps the actor's gradient is zero,
    but the single Adam still moves it with its momentum, as in the reference (docs/pitfalls.md pitfall 6);
    targets move only on full steps. Actor metrics are NaN on critic-only steps, where no actor loss is computed."""
    tx = optax.adam(config.lr)

    def step(with_actor: bool):
        def loss_fn(p: dict, key: jax.Array) -> tuple[jax.Array, Metrics]:
            c_loss, c_info = critic_loss(config, p, state.target_params, batch, key)
            metrics = {f"critic/{k}": v for k, v in c_info.items()}
            if not with_actor:
                return c_loss, metrics | {name: jnp.full((), jnp.nan) for name in ACTOR_METRICS}
            a_loss, a_info = actor_loss(config, p, batch)
            return c_loss + a_loss, metrics | {f"actor/{k}": v for k, v in a_info.items()}

        targets = ("critic", "actor") if with_actor else ()
        return lambda s: summed_loss_update(tx, s, loss_fn, targets=targets, tau=config.tau)

    full_update = (state.step + 1) % config.actor_freq == 0
    return jax.lax.cond(full_update, step(True), step(False), state)


def act(
    config: ReBRACConfig,
    state: TrainState,
    observations: jax.Array,
    key: jax.Array,
    deterministic: bool = False,
) -> jax.Array:
    """tanh(mean) plus clipped N(0, 0.2²) exploration noise; deterministic = temperature 0 = no noise."""
    actions = _mode(config, state.params["actor"], observations, state.act_dim)
    if not deterministic:
        actions = actions + _smoothing_noise(config, key, actions.shape)
    return jnp.clip(actions, -1.0, 1.0)
