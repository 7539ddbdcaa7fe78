"""SRPO (Chen et al., ICLR 2024, score-regularised policy optimisation): a deterministic policy that climbs Q while
the frozen score of a diffusion behaviour model pulls it toward the data. As in the FQL paper (App. E.2), SRPO is
built on IDQL: its DDPM behaviour model and IQL value functions are IDQL's, trained by IDQL's update; only the policy
is new. The official code is thu-ml/SRPO (`SRPO.py`, continuous time); the discrete-time mapping and every choice
no source settles are in docs/algorithms.md#srpo."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from flowsteer.algorithms import idql
from flowsteer.algorithms.diffusion import schedule
from flowsteer.algorithms.idql import IDQLConfig
from flowsteer.algorithms.networks import MLP
from flowsteer.algorithms.training import Batch, Metrics, TrainState, train_network

# The policy's metrics; NaN on the updates before `policy_start_step` (staged training), when none were computed.
POLICY_METRICS = ("actor/actor_loss", "actor/score_loss", "actor/q_loss", "actor/q", "actor/mse")


@dataclass(frozen=True)
class SRPOConfig(IDQLConfig):
    """SRPO hyperparameters: IDQL's fields (behaviour model, V, Q; `num_samples` is unused, SRPO acts with its
    policy) plus the policy's. The FQL paper's reimplementation is not public, so the policy's settings below are
    choices, each marked UNVERIFIED with the reason for its default (docs/algorithms.md#srpo)."""

    beta: float = 0.1  # Q coefficient β: loss ∝ score term − β·Q term, so larger β = less regularisation (per env)
    policy_lr: float = 3e-4  # Adam learning rate of the policy; UNVERIFIED: constant (the official code decays it
    # to 0 over its 1M policy steps, a horizon that a run of another length would not match)
    policy_hidden_dims: tuple[int, ...] = (256, 256)  # ReLU MLP of the tanh policy; UNVERIFIED: the official
    # code's (256×2; 256×4 on maze, a preset)
    regq: bool = False  # scale ∇ₐQ to unit RMS per sample; UNVERIFIED: the official code's switch (on for maze)
    ema_score: bool = False  # ε̂ from the EMA behaviour model (True) or the online one; UNVERIFIED: online, as the
    # official code scores with the trained network itself (it has no EMA); trained jointly from step 0, the EMA
    # (actor_tau 0.001) lags ~1000 updates, so the first updates regularise toward an untrained score
    drop_t0: bool = False  # leave diffusion step t=0 out of the SRPO loss; UNVERIFIED: kept, since with T=5 it is
    # already noisy (1 − ᾱ₀ = 0.2); the official t ~ U[0.02, 0.98] only avoids σ → 0 and σ → 1
    policy_start_step: int = 0  # the policy trains from this update on; UNVERIFIED: 0 trains all jointly, as IDQL
    # does (the official code trains behaviour, critic and policy one after another)
    discount: float = 0.99  # γ; UNVERIFIED: 0.995 on the long-horizon datasets, as every learner here (the
    # official code hard-codes 0.99)


def _policy_net(config: SRPOConfig, act_dim: int) -> MLP:
    return MLP((*config.policy_hidden_dims, act_dim), activation="relu")


def policy_actions(config: SRPOConfig, policy_params: dict, observations: jax.Array, act_dim: int) -> jax.Array:
    """a = π_θ(s) = tanh(MLP(s)): the deterministic ("Dirac") policy of the official code."""
    return jnp.tanh(_policy_net(config, act_dim).apply(policy_params, observations))


def init(config: SRPOConfig, obs_dim: int, act_dim: int, key: jax.Array) -> TrainState:
    """IDQL's networks (noise net, Q, V and their slow copies) plus the policy and its Adam state."""
    idql_key, policy_key = jax.random.split(key)
    state = idql.init(config, obs_dim, act_dim, idql_key)
    policy = _policy_net(config, act_dim).init(policy_key, jnp.zeros((1, obs_dim)))
    params = {**state.params, "policy": policy}
    opt_state = {**state.opt_state, "policy": optax.adam(config.policy_lr).init(policy)}
    return state.replace(params=params, opt_state=opt_state)


def srpo_loss(
    actions: jax.Array, eps_hat: jax.Array, q_grad: jax.Array, weights: jax.Array, beta: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """mean_b[w(t)·⟨ε̂, a⟩ − β·⟨g, a⟩] and its two terms, as thu-ml/SRPO `update_SRPO_policy` writes it.

    ε̂ and g must be constants: then the gradient is E[(w·ε̂ − β·g)·∂a/∂θ], score distillation toward the behaviour
    density plus ascent on Q.
    """
    score_loss = jnp.mean(weights * jnp.sum(eps_hat * actions, axis=-1))
    q_loss = -beta * jnp.mean(jnp.sum(q_grad * actions, axis=-1))
    return score_loss + q_loss, score_loss, q_loss


def policy_loss(
    config: SRPOConfig, params: dict, target_params: dict, batch: Batch, key: jax.Array
) -> tuple[jax.Array, Metrics]:
    """The SRPO loss of π_θ with the behaviour score and the Q gradient frozen (docs/algorithms.md#srpo)."""
    obs = batch["observations"]
    act_dim = batch["actions"].shape[-1]
    critic, _, noise_net = idql.networks(config, act_dim)
    actions = policy_actions(config, params["policy"], obs, act_dim)
    # Only `actions` carries gradient below; ε̂ and g are evaluated at its frozen value (no second-order path).
    frozen_actions = jax.lax.stop_gradient(actions)

    # Discrete-time SRPO: a_t = √ᾱ_t·a + √(1 − ᾱ_t)·z with IDQL's T steps, and w(t) = 1 − ᾱ_t, the analogue of the
    # official σ_t² ("VDS") weighting.
    _, _, alpha_hats = schedule(config.diffusion_steps)
    time_key, noise_key = jax.random.split(key)
    t = jax.random.randint(time_key, actions.shape[:-1], 1 if config.drop_t0 else 0, config.diffusion_steps)
    alpha_hat = jnp.asarray(alpha_hats)[t][..., None]
    noisy = jnp.sqrt(alpha_hat) * frozen_actions + jnp.sqrt(1 - alpha_hat) * jax.random.normal(noise_key, actions.shape)
    behavior = target_params["behavior"] if config.ema_score else params["behavior"]
    # training=False: dropout off, as the official code puts its behaviour model in eval mode here.
    eps_hat = noise_net.apply(jax.lax.stop_gradient(behavior), obs, noisy, t[..., None].astype(noisy.dtype))

    # g = ∇ₐ of the MEAN of the two target heads (the official code; not the min).
    def mean_q(a: jax.Array) -> jax.Array:
        return critic.apply(jax.lax.stop_gradient(target_params["critic"]), obs, a).mean(0).sum()

    q_grad = jax.grad(mean_q)(frozen_actions)
    if config.regq:
        # Per-sample RMS over action dimensions (not over the batch); the floor only guards a zero gradient.
        q_grad = q_grad / jnp.maximum(jnp.sqrt(jnp.mean(q_grad**2, axis=-1, keepdims=True)), 1e-12)

    loss, score_loss, q_loss = srpo_loss(actions, eps_hat, q_grad, 1 - alpha_hat[..., 0], config.beta)
    q = critic.apply(target_params["critic"], obs, frozen_actions).mean(0)
    return loss, {
        "actor_loss": loss,
        "score_loss": score_loss,
        "q_loss": q_loss,
        "q": q.mean(),
        "mse": jnp.mean((frozen_actions - batch["actions"]) ** 2),
    }


def update(config: SRPOConfig, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """IDQL's update of the behaviour model, V and Q, then one Adam step of the policy on the whole batch against
    the networks that update left (the noise net or its EMA, and the target critic)."""
    state, idql_metrics = idql.update(config, state, batch)
    # IDQL's "actor" is its behaviour model; here the actor is the policy.
    metrics = {k.replace("actor/", "behavior/", 1): v for k, v in idql_metrics.items()}
    rng, key = jax.random.split(state.rng)
    params, opt_state, info = train_network(
        optax.adam(config.policy_lr),
        state.params,
        state.opt_state,
        "policy",
        lambda p: policy_loss(config, p, state.target_params, batch, key),
    )
    policy_metrics = {f"actor/{k}": v for k, v in info.items() if not k.startswith("grad/")}
    if config.policy_start_step > 0:
        started = state.step > config.policy_start_step  # idql.update has already counted this update

        def keep_until_started(new, old):
            return jax.tree.map(lambda n, o: jnp.where(started, n, o), new, old)

        params = keep_until_started(params, state.params)
        opt_state = keep_until_started(opt_state, state.opt_state)
        policy_metrics = {k: jnp.where(started, v, jnp.nan) for k, v in policy_metrics.items()}
    return state.replace(params=params, opt_state=opt_state, rng=rng), metrics | policy_metrics


def act(
    config: SRPOConfig, state: TrainState, observations: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """a = π_θ(s): one forward pass, no sampling, so `key` and `deterministic` are unused."""
    del key, deterministic
    return policy_actions(config, state.params["policy"], observations, state.act_dim)
