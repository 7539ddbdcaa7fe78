"""RLPD as the FQL paper runs it: the FQL repository's SAC, online only, every batch half offline data and half
online data (Ball et al. 2023, "Efficient Online Reinforcement Learning with Offline Data", arXiv 2302.02948;
seohongpark/fql agents/sac.py with main.py `--offline_steps=0 --balanced_sampling=1`; docs/algorithms.md#rlpd).

- Critic: 2 LayerNorm heads, TD target from the current actor's next action and the target heads, aggregated by
  `q_agg`, with no entropy term by default (`backup_entropy=False`).
- Actor: tanh-Gaussian with a state-dependent log-std, climbing the mean of the two heads with α frozen.
- Temperature: α·(H − H_target), H_target = −|A|/2.
- One Adam over all three on the summed loss, then Polyak of the critic from its pre-step parameters.

QC-RLPD (Li, Zhou, Levine 2025, "Reinforcement Learning with Action Chunking", arXiv 2507.07969; reference
ColinQiyangLi/qc agents/acrlpd.py; docs/chunking.md) is the same learner over chunks of H = `action_chunk` actions:
actor and critic act on the flat H·d chunk (so the target entropy is −0.5·H·d, as the reference's), the TD target
bootstraps with γ^H from the state after the chunk, chunks that cross an episode end are left out of the TD loss,
and the actor loss gains a BC term `bc_alpha`·(−log π(A_t|s)) on the batch's chunks (`bc_loss`). H = 1 with
`bc_alpha` 0 is RLPD exactly; the reference's RLPD-AC is H > 1 with `bc_alpha` 0.

The run loop supplies the rest: no offline phase (`check_run`), and online batches drawn half from the dataset and
half from the online transitions (`balanced_sampling`; flowsteer.algorithms.training.balanced_batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms import sac
from flowsteer.algorithms.chunks import bootstrap_discount, valid_mean
from flowsteer.algorithms.networks import Critic, GaussianActor, tanh_gaussian_log_prob, tanh_gaussian_sample
from flowsteer.algorithms.training import ACTION_CLIP_EPS, Batch, Metrics, TrainState, new_state, summed_loss_update


@dataclass(frozen=True)
class RLPDConfig:
    """RLPD hyperparameters: the FQL reference's `agents/sac.py` `get_config()` (seohongpark/fql at 719d044)."""

    lr: float = 3e-4  # Adam learning rate, one optimizer over critic, actor and temperature
    batch_size: int = 256  # transitions per update: half from the dataset, half from the online buffer
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # policy MLP
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # critic MLPs
    layer_norm: bool = True  # LayerNorm in the critic
    actor_layer_norm: bool = False  # LayerNorm in the policy
    discount: float = 0.99  # γ (0.995 on the long-horizon datasets: presets)
    tau: float = 0.005  # Polyak rate of the target critic
    # Target-head aggregation. The FQL paper uses clipped double Q (min) for RLPD on adroit only, so mean on
    # OGBench; the reference's README command runs the sac.py default, min. We follow the paper.
    q_agg: Literal["mean", "min"] = "mean"
    backup_entropy: bool = False  # subtract α·log π(a′|s′) from the next value in the TD target (reference: no)
    target_entropy: float | None = None  # None: −0.5·|A|, |A| = H·d (the reference's multiplier 0.5)
    init_temperature: float = 1.0  # initial α (reference: LogParam(init_value=1))
    actor_fc_scale: float = 0.01  # init scale of the policy's mean and log-std heads
    bc_alpha: float = 0.0  # weight of the actor's BC term −log π(A_t|s) on batch chunks (QC-RLPD: 0.01; RLPD: 0)
    # Whether the BC term leaves out chunks that cross an episode end, as the TD loss does (ColinQiyangLi/qam
    # agents/rlpd.py); QC's agents/acrlpd.py keeps every chunk in it.
    bc_valid_only: bool = False
    action_chunk: int = 1  # H, actions per policy call: set from the run (docs/chunking.md), never here

    def __post_init__(self) -> None:
        if self.q_agg not in ("mean", "min"):
            raise ValueError(f"q_agg must be 'mean' or 'min', got {self.q_agg!r}")


def check_run(config: RLPDConfig, offline_steps: int, online_steps: int) -> None:
    """RLPD learns online from the start: it has no offline phase (the reference runs `--offline_steps=0`)."""
    if offline_steps > 0:
        raise ValueError(
            f"rlpd has no offline pretraining (it mixes the dataset into every online batch instead), but "
            f"offline_steps is {offline_steps}: set offline_steps to 0"
        )
    if online_steps == 0:
        raise ValueError("rlpd learns online only: set online_steps > 0")


def balanced_sampling(config: RLPDConfig) -> bool:
    """Every online batch is half dataset, half online transitions (the reference's `--balanced_sampling=1`)."""
    return True


def _networks(config: RLPDConfig, act_dim: int) -> tuple[Critic, GaussianActor]:
    critic = Critic(config.value_hidden_dims, layer_norm=config.layer_norm, num_ensembles=2)
    actor = GaussianActor(
        config.actor_hidden_dims,
        act_dim,
        layer_norm=config.actor_layer_norm,
        state_dependent_std=True,
        final_fc_init_scale=config.actor_fc_scale,
    )
    return critic, actor


def target_entropy(config: RLPDConfig, act_dim: int) -> float:
    return -0.5 * act_dim if config.target_entropy is None else config.target_entropy


def sample_actions(
    config: RLPDConfig, actor_params: dict, observations: jax.Array, key: jax.Array, act_dim: int
) -> tuple[jax.Array, jax.Array]:
    """(a, log π(a|s)), a = tanh(u), u ~ N(μ(s), σ(s)²), reparameterised."""
    mean, log_std = _networks(config, act_dim)[1].apply(actor_params, observations)
    return tanh_gaussian_sample(mean, log_std, key)


def init(config: RLPDConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """Critic (+ target copy), actor and log α; one Adam state over all of them."""
    critic, actor = _networks(config, act_dim)
    rng, critic_key, actor_key = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    params = {
        "critic": critic.init(critic_key, obs, act),
        "actor": actor.init(actor_key, obs),
        "log_alpha": jnp.asarray(jnp.log(config.init_temperature), jnp.float32),
    }
    return new_state(params, {"critic": params["critic"]}, optax.adam(config.lr).init(params), rng, act_dim)


def critic_loss(
    config: RLPDConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """mean over heads and batch of (Q_i(s, a) − y)², y = r + γ^H·mask·agg_i Q̄_i(s′, a′), a′ ~ π(s′) from the
    current actor; the actor and α are frozen here (the reference samples a′ without `grad_params`). A chunk that
    crosses an episode end counts 0 in the mean (`chunks.valid_mean`)."""
    act_dim = batch["actions"].shape[-1]
    critic, _ = _networks(config, act_dim)
    frozen = jax.lax.stop_gradient(params)
    next_obs = batch["next_observations"]
    next_actions, next_log_prob = sample_actions(config, frozen["actor"], next_obs, key, act_dim)
    next_qs = critic.apply(target_params["critic"], next_obs, next_actions)
    next_q = next_qs.min(axis=0) if config.q_agg == "min" else next_qs.mean(axis=0)
    if config.backup_entropy:
        next_q = next_q - sac.temperature(frozen["log_alpha"]) * next_log_prob
    target_q = batch["rewards"] + bootstrap_discount(config.discount, config.action_chunk) * batch["masks"] * next_q
    qs = critic.apply(params["critic"], batch["observations"], batch["actions"])
    loss = valid_mean((qs - target_q) ** 2, batch)
    return loss, {"critic/critic_loss": loss, "critic/q_mean": qs.mean(), "critic/q_max": qs.max(),
                  "critic/q_min": qs.min()}  # fmt: skip


def bc_loss(config: RLPDConfig, actor_params: dict, batch: Batch) -> jax.Array:
    """mean over the batch of −log π(A_t|s) at the batch's actions, clipped to ±(1 − 1e−5) so atanh is finite
    (QC agents/acrlpd.py `actor_loss`); with `bc_valid_only`, chunks that cross an episode end count 0."""
    act_dim = batch["actions"].shape[-1]
    mean, log_std = _networks(config, act_dim)[1].apply(actor_params, batch["observations"])
    limit = 1.0 - ACTION_CLIP_EPS
    nll = -tanh_gaussian_log_prob(mean, log_std, jnp.clip(batch["actions"], -limit, limit))
    return valid_mean(nll, batch) if config.bc_valid_only else jnp.mean(nll)


def actor_loss(config: RLPDConfig, params: dict, batch: Batch, key: jax.Array) -> tuple[jax.Array, Metrics]:
    """mean(α·log π(ã|s) − mean_i Q_i(s, ã)) + bc_alpha·`bc_loss`, ã reparameterised; critic and α frozen. Also
    returns the entropy estimate −mean log π that the temperature loss reads."""
    act_dim = batch["actions"].shape[-1]
    critic, _ = _networks(config, act_dim)
    frozen = jax.lax.stop_gradient(params)
    actions, log_prob = sample_actions(config, params["actor"], batch["observations"], key, act_dim)
    q = critic.apply(frozen["critic"], batch["observations"], actions).mean(axis=0)
    loss = jnp.mean(sac.temperature(frozen["log_alpha"]) * log_prob - q)
    info = {"actor/q": q.mean(), "actor/entropy": -log_prob.mean()}
    if config.bc_alpha > 0:  # RLPD (bc_alpha 0) computes no BC term, so it logs none
        bc = bc_loss(config, params["actor"], batch)
        loss = loss + config.bc_alpha * bc
        info["actor/bc_loss"] = bc
    return loss, {"actor/actor_loss": loss} | info


def update(config: RLPDConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One Adam step on critic + actor + temperature losses, then Polyak of the critic (pre-step parameters)."""

    def loss_fn(params: dict, key: jax.Array) -> tuple[jax.Array, Metrics]:
        critic_key, actor_key = jax.random.split(key)
        c_loss, c_info = critic_loss(config, params, state.target_params, batch, critic_key)
        a_loss, a_info = actor_loss(config, params, batch, actor_key)
        t_loss, t_info = sac.temperature_loss(
            params["log_alpha"], a_info["actor/entropy"], target_entropy(config, state.act_dim)
        )
        return c_loss + a_loss + t_loss, c_info | a_info | t_info

    return summed_loss_update(optax.adam(config.lr), state, loss_fn, targets=("critic",), tau=config.tau)


def act(
    config: RLPDConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Online collection samples (temperature 1); evaluation takes tanh(mean) (temperature 0: the std is 0)."""
    if deterministic:
        mean, _ = _networks(config, state.act_dim)[1].apply(state.params["actor"], observations)
        return jnp.clip(jnp.tanh(mean), -1.0, 1.0)
    actions, _ = sample_actions(config, state.params["actor"], observations, key, state.act_dim)
    return jnp.clip(actions, -1.0, 1.0)
