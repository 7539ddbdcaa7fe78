"""What each loss may train: frozen parts get exactly zero gradient, trained parts get a non-zero one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, perturb

from flowsteer.algorithms import cac, fql, idql, ifql, iql, rebrac
from flowsteer.algorithms.training import train_step

SMALL = {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16)}
KEY = jax.random.PRNGKey(5)


def grad_norms(fn, params: dict) -> dict[str, float]:
    """‖∂fn/∂params[name]‖ for every top-level network."""
    grads = jax.jit(jax.grad(fn))(params)
    return {name: float(optax.tree.norm(g)) for name, g in grads.items()}


def assert_routes(norms: dict[str, float], trained: set[str]) -> None:
    for name, norm in norms.items():
        if name in trained:
            assert norm > 0, f"{name} should be trained by this loss"
        else:
            assert norm == 0.0, f"{name} should be frozen in this loss, got |grad| = {norm}"


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_fql_routing(batch):
    config = fql.FQLConfig(**SMALL, normalize_q_loss=True)
    state = fql.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params, targets = state.params, {"critic": perturb(state.params["critic"])}

    def actor_metric(name):
        return lambda p: fql.actor_loss(config, p, batch, KEY)[1][name]

    assert_routes(grad_norms(lambda p: fql.critic_loss(config, p, targets, batch, KEY)[0], params), {"critic"})
    assert_routes(grad_norms(actor_metric("bc_flow_loss"), params), {"bc_flow"})
    # docs/pitfalls.md pitfall 1: the distillation target (the Euler-integrated BC flow) receives no gradient.
    assert_routes(grad_norms(actor_metric("distill_loss"), params), {"onestep_policy"})
    # docs/pitfalls.md pitfall 1: the critic inside the actor loss is frozen; Q moves only the one-step policy.
    assert_routes(grad_norms(actor_metric("q_loss"), params), {"onestep_policy"})


def test_iql_routing(batch):
    config = iql.IQLConfig(**SMALL)
    state = iql.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    params, targets = state.params, {"critic": perturb(state.params["critic"])}
    critic, value, _ = iql._networks(config, ACT_DIM)
    # The value target is the *target* critic: the online critic gets nothing from the value loss.
    assert_routes(grad_norms(lambda p: iql.value_loss(critic, value, p, targets, batch, 0.9)[0], params), {"value"})
    # V(s′) in the TD target is frozen.
    assert_routes(grad_norms(lambda p: iql.critic_loss(critic, value, p, batch, 0.99)[0], params), {"critic"})
    assert_routes(grad_norms(lambda p: iql.actor_loss(config, p, batch)[0], params), {"actor"})


def test_ifql_flow_sees_no_q(batch):
    config = ifql.IFQLConfig(**SMALL)
    state = ifql.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    norms = grad_norms(
        lambda p: ifql.total_loss(config, p, state.target_params, batch, KEY)[1]["actor/actor_loss"], state.params
    )
    assert_routes(norms, {"actor_flow"})


def test_rebrac_routing(batch):
    config = rebrac.ReBRACConfig(**SMALL, alpha_actor=0.1, alpha_critic=0.1)
    state = rebrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    targets = perturb(state.params)
    # The next action comes from the target actor: the online actor gets no critic gradient.
    assert_routes(grad_norms(lambda p: rebrac.critic_loss(config, p, targets, batch, KEY)[0], state.params), {"critic"})
    assert_routes(grad_norms(lambda p: rebrac.actor_loss(config, p, batch)[0], state.params), {"actor"})


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_rebrac_actor_moves_on_critic_steps_only_by_adam_momentum(dataset):
    """Step 1 is critic-only (i=1, i % 2 ≠ 0): zero actor gradient and zero Adam moments, so no move.
    Step 2 is full: actor and targets move. Step 3 is critic-only: the actor gradient is zero, yet the shared
    Adam moves the actor with its first moment (as the reference does); the targets stay put."""
    config = rebrac.ReBRACConfig(**SMALL, alpha_actor=0.1, batch_size=16)
    step = jax.jit(lambda s: train_step(rebrac.update, config, s, dataset))
    s0 = rebrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    s1, _ = step(s0)
    s2, _ = step(s1)
    s3, _ = step(s2)

    def same(a, b) -> bool:
        return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    assert same(s1.params["actor"], s0.params["actor"]) and same(s1.target_params, s0.target_params)
    assert not same(s2.params["actor"], s1.params["actor"]) and not same(s2.target_params, s1.target_params)
    assert not same(s3.params["actor"], s2.params["actor"]) and same(s3.target_params, s2.target_params)
    # The step-3 actor move is exactly Adam's update for a zero gradient.
    zero = jax.tree.map(jnp.zeros_like, s2.params)
    updates, _ = optax.adam(config.lr).update(zero, s2.opt_state, s2.params)
    expected = optax.apply_updates(s2.params["actor"], updates["actor"])
    for x, y in zip(jax.tree.leaves(s3.params["actor"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_rebrac_logs_its_actor_metrics_as_nan_on_critic_only_steps(dataset):
    """No actor loss is computed on a critic-only step, so none is logged as a number (0.0 would read as one)."""
    config = rebrac.ReBRACConfig(**SMALL, alpha_actor=0.1, batch_size=16)
    step = jax.jit(lambda s: train_step(rebrac.update, config, s, dataset))
    s1, critic_only = step(rebrac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0)))
    _, full = step(s1)
    assert all(np.isnan(float(critic_only[name])) for name in rebrac.ACTOR_METRICS)
    assert all(np.isfinite(float(full[name])) for name in rebrac.ACTOR_METRICS)
    assert np.isfinite(float(critic_only["critic/critic_loss"]))


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_idql_updates_each_network_with_its_own_optimizer_and_ema(dataset):
    config = idql.IDQLConfig(actor_hidden_dim=16, value_hidden_dims=(16, 16), batch_size=16, critic_batch_size=8)
    s0 = idql.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    s1, metrics = jax.jit(lambda s: train_step(idql.update, config, s, dataset))(s0)
    assert set(s1.opt_state) == {"behavior", "critic", "value"}
    # EMA: target ← τ·new + (1 − τ)·old, with the *updated* online parameters.
    for new, old, target in zip(
        jax.tree.leaves(s1.params["behavior"]),
        jax.tree.leaves(s0.target_params["behavior"]),
        jax.tree.leaves(s1.target_params["behavior"]),
        strict=True,
    ):
        np.testing.assert_allclose(target, 0.001 * new + 0.999 * old, rtol=1e-6, atol=1e-7)
    assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_cac_routing(batch):
    config = cac.CACConfig(**SMALL, backup_samples=3)
    state = cac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    # Online and target networks in one tree, so one gradient shows where a loss reaches.
    every = state.params | {f"target_{k}": v for k, v in perturb(state.params).items()}

    def split(p: dict) -> tuple[dict, dict]:
        return {k: p[k] for k in ("critic", "actor")}, {k: p[f"target_{k}"] for k in ("critic", "actor")}

    def actor_metric(name):
        return lambda p: cac.actor_loss(config, *split(p), batch, KEY, jnp.int32(5))[1][name]

    # The next actions come from the EMA policy and the TD target is a constant: only the critic learns here.
    assert_routes(grad_norms(lambda p: cac.critic_loss(config, *split(p), batch, KEY)[0], every), {"critic"})
    # The consistency teacher (EMA policy) and the critic inside the Q term are frozen: both reach the actor only.
    assert_routes(grad_norms(actor_metric("consistency_loss"), every), {"actor"})
    assert_routes(grad_norms(actor_metric("q_loss"), every), {"actor"})
