"""IDQL (Hansen-Estruch et al. 2023): an IQL critic plus a DDPM behaviour policy, acting by best-of-N under Q.
Follows the official code (philippe-eecs/IDQL) that the FQL paper ran (App. E.2), in the learner its offline
launcher runs: jaxrl5/agents/ddpm_iql_simple/ddpm_iql_learner.py with launcher/examples/train_ddpm_iql_offline.py.
Differences from it are listed in docs/algorithms.md#idql."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms import iql
from flowsteer.algorithms.diffusion import ddpm_loss, ddpm_sample
from flowsteer.algorithms.ifql import best_of_n
from flowsteer.algorithms.networks import Critic, DDPMNoiseNet
from flowsteer.algorithms.training import Batch, Metrics, TrainState, new_state, optimizer_step, polyak


@dataclass(frozen=True)
class IDQLConfig:
    """IDQL hyperparameters: the official launcher's, with the FQL paper's per-domain choices in the presets.

    Reference: philippe-eecs/IDQL at 7582571, the learner its launcher runs (`ddpm_iql_simple`). Known
    divergences: none in the update; acting takes N = 32 candidates (FQL paper Table 6) where the launcher's
    default is 64 (docs/algorithms.md#idql).
    """

    actor_lr: float = 3e-4  # peak AdamW learning rate of the noise network (cosine-decayed to 0)
    # Cosine decay horizon. The reference decays over its whole run (decay_steps = max_steps = 3M), so a run
    # sets this to its own number of updates unless the presets or the user set it
    # (flowsteer.algorithms.registry.make_config); 3M is the value outside a run.
    actor_lr_decay_steps: int = 3_000_000
    actor_weight_decay: float = 1e-4  # AdamW weight decay of the noise network (optax's default, unmasked)
    critic_lr: float = 3e-4  # Adam learning rate of Q
    value_lr: float = 3e-4  # Adam learning rate of V
    batch_size: int = 512  # transitions per update; the noise network, V and Q all train on all of them
    critic_batch_size: int | None = None  # V and Q on the first this many; None: all (256: the older ddpm_iql)
    value_hidden_dims: tuple[int, ...] = (512, 512)  # V and Q MLPs, ReLU ((256, 256) on manipulation)
    value_layer_norm: bool = True  # LayerNorm on V's input (the launcher's value_layer_norm); Q has none
    actor_hidden_dim: int = 256  # width of the residual noise network (blocks expand it 4×)
    actor_num_blocks: int = 3  # residual blocks
    actor_dropout_rate: float = 0.1  # dropout in each residual block, training only
    actor_layer_norm: bool = True  # LayerNorm at the start of each residual block
    time_dim: int = 128  # learnable Fourier features of the diffusion step; the cond MLP is (2·time_dim)×2, swish
    diffusion_steps: int = 5  # T of the DDPM
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target critic
    actor_tau: float = 0.001  # EMA rate of the noise network used for sampling
    expectile: float = 0.7  # expectile κ (0.7 locomotion, 0.9 manipulation)
    num_samples: int = 32  # N candidate actions per state at acting time


def networks(config: IDQLConfig, act_dim: int) -> tuple[Critic, Critic, DDPMNoiseNet]:
    """(Q with 2 heads, V, noise network); public because SRPO's critic and behaviour model are IDQL's."""
    critic = Critic(config.value_hidden_dims, layer_norm=False, num_ensembles=2, activation="relu")
    value = Critic(
        config.value_hidden_dims,
        layer_norm=False,
        num_ensembles=1,
        activation="relu",
        input_layer_norm=config.value_layer_norm,
    )
    noise_net = DDPMNoiseNet(
        act_dim,
        hidden_dim=config.actor_hidden_dim,
        num_blocks=config.actor_num_blocks,
        dropout_rate=config.actor_dropout_rate,
        layer_norm=config.actor_layer_norm,
        time_dim=config.time_dim,
    )
    return critic, value, noise_net


def actor_lr_schedule(config: IDQLConfig) -> optax.Schedule:
    """The noise network's learning rate: cosine from actor_lr to 0 over actor_lr_decay_steps, then 0."""
    return optax.cosine_decay_schedule(config.actor_lr, config.actor_lr_decay_steps)


def _optimizers(config: IDQLConfig) -> dict[str, optax.GradientTransformation]:
    """Three optimizers, one per network, as in the official code."""
    return {
        "behavior": optax.adamw(actor_lr_schedule(config), weight_decay=config.actor_weight_decay),
        "critic": optax.adam(config.critic_lr),
        "value": optax.adam(config.value_lr),
    }


def init(config: IDQLConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Initialise noise net, Q (2 heads) and V; the EMA noise net and the target critic start as copies."""
    critic, value, noise_net = networks(config, act_dim)
    rng, critic_key, value_key, actor_key = jax.random.split(key, 4)
    obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim)), jnp.zeros((1, 1))
    params = {
        "behavior": noise_net.init(actor_key, obs, act, t),
        "critic": critic.init(critic_key, obs, act),
        "value": value.init(value_key, obs),
    }
    opt_state = {name: tx.init(params[name]) for name, tx in _optimizers(config).items()}
    target_params = {"behavior": params["behavior"], "critic": params["critic"]}
    return new_state(params, target_params, opt_state, rng, act_dim)


def behavior_loss(config: IDQLConfig, behavior_params: dict, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
    """ε-prediction DDPM loss with unit weights: IDQL's behaviour policy is pure BC."""
    _, _, noise_net = networks(config, batch["actions"].shape[-1])
    diffusion_key, dropout_key = jax.random.split(key)

    def eps(x: jax.Array, t: jax.Array) -> jax.Array:
        return noise_net.apply(
            behavior_params, batch["observations"], x, t, training=True, rngs={"dropout": dropout_key}
        )

    loss = ddpm_loss(eps, batch["actions"], diffusion_key, config.diffusion_steps)
    return loss, {"actor_loss": loss}


def critic_batch(config: IDQLConfig, batch: Batch) -> Batch:
    """The transitions V and Q train on: the whole batch, as the launcher's learner (`ddpm_iql_simple`) does."""
    if config.critic_batch_size is None:
        return batch
    return {k: v[: config.critic_batch_size] for k, v in batch.items()}


def update(config: IDQLConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Three sequential steps as in the official `update`: noise net (then its EMA), V, then Q with the new V."""
    rng, key = jax.random.split(state.rng)
    critic, value, _ = networks(config, batch["actions"].shape[-1])
    txs = _optimizers(config)
    params, opt_state, target_params = dict(state.params), dict(state.opt_state), dict(state.target_params)

    params["behavior"], opt_state["behavior"], a_info = optimizer_step(
        txs["behavior"], params["behavior"], opt_state["behavior"], lambda p: behavior_loss(config, p, batch, key)
    )
    # jaxrl5 averages in the *updated* parameters (no one-step lag, unlike the FQL codebase).
    target_params["behavior"] = polyak(params["behavior"], target_params["behavior"], config.actor_tau)

    mini = critic_batch(config, batch)
    params["value"], opt_state["value"], v_info = optimizer_step(
        txs["value"],
        params["value"],
        opt_state["value"],
        lambda p: iql.value_loss(critic, value, {"value": p}, target_params, mini, config.expectile),
    )
    params["critic"], opt_state["critic"], c_info = optimizer_step(
        txs["critic"],
        params["critic"],
        opt_state["critic"],
        lambda p: iql.critic_loss(
            critic, value, {"critic": p, "value": params["value"]}, mini, config.discount, sum_heads=False
        ),
    )
    target_params["critic"] = polyak(params["critic"], target_params["critic"], config.tau)

    metrics = {f"actor/{k}": v for k, v in a_info.items() if not k.startswith("grad/")}
    metrics |= {f"value/{k}": v for k, v in v_info.items() if not k.startswith("grad/")}
    metrics |= {f"critic/{k}": v for k, v in c_info.items() if not k.startswith("grad/")}
    new = state.replace(params=params, target_params=target_params, opt_state=opt_state, step=state.step + 1)
    return new.replace(rng=rng), metrics


def act(
    config: IDQLConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """N DDPM samples per state from the EMA noise net, keep the one the target critic rates highest.

    `deterministic` is ignored: the official `eval_actions` always samples its candidates.
    """
    del deterministic
    critic, _, noise_net = networks(config, state.act_dim)
    shape = (*observations.shape[:-1], config.num_samples, state.act_dim)
    obs_n = jnp.broadcast_to(observations[..., None, :], (*shape[:-1], observations.shape[-1]))
    candidates = ddpm_sample(
        lambda x, t: noise_net.apply(state.target_params["behavior"], obs_n, x, t),
        key,
        shape,
        config.diffusion_steps,
    )
    return best_of_n(critic, state.target_params["critic"], observations, candidates)
