"""RLPD: SAC's temperature and gradient routing, balanced batches and the refusal of an offline phase."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsteer.algorithms import make_config, rlpd, sac
from flowsteer.algorithms.registry import check_run
from flowsteer.algorithms.training import balanced_batch, online_update_fn

TINY = {"actor_hidden_dims": (8,), "value_hidden_dims": (8,), "batch_size": 8}


@pytest.mark.parametrize(("entropy", "expected"), [(1.0, 3.5), (-3.0, -0.5)])
def test_temperature_falls_when_the_entropy_exceeds_the_target(entropy: float, expected: float) -> None:
    # log α = 0 (α = 1), target −2.5 (|A| = 5): loss = α·(H − target) and d loss / d log α = α·(H − target), so a
    # gradient step lowers α when H > target and raises it when H < target.
    loss, _ = sac.temperature_loss(jnp.zeros(()), jnp.asarray(entropy), -2.5)
    grad = jax.grad(lambda log_alpha: sac.temperature_loss(log_alpha, jnp.asarray(entropy), -2.5)[0])(jnp.zeros(()))
    assert float(loss) == pytest.approx(expected)
    assert float(grad) == pytest.approx(expected)


def test_the_target_entropy_is_minus_half_the_action_dimension() -> None:
    assert rlpd.target_entropy(make_config("rlpd"), act_dim=5) == -2.5


def test_the_critic_gets_no_gradient_from_the_actor_and_the_actor_none_from_the_critic(batch) -> None:
    config = make_config("rlpd", overrides=TINY)
    params = rlpd.init(config, 3, 2, jax.random.PRNGKey(0)).params
    key = jax.random.PRNGKey(1)
    actor_grads = jax.jit(jax.grad(lambda p: rlpd.actor_loss(config, p, batch, key)[0]))(params)
    critic_loss = jax.grad(lambda p: rlpd.critic_loss(config, p, {"critic": params["critic"]}, batch, key)[0])
    critic_grads = jax.jit(critic_loss)(params)

    def norm(tree) -> float:
        return float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(tree)))

    assert norm(actor_grads["critic"]) == 0.0 and norm(actor_grads["log_alpha"]) == 0.0
    assert norm(critic_grads["actor"]) == 0.0 and norm(critic_grads["log_alpha"]) == 0.0
    assert norm(actor_grads["actor"]) > 0.0 and norm(critic_grads["critic"]) > 0.0


def _rows_buffer(rows: int) -> dict:
    return {"row": jnp.arange(rows, dtype=jnp.float32), "actions": jnp.zeros((rows, 1))}


def test_a_balanced_batch_is_half_dataset_rows_and_half_online_rows() -> None:
    batch = balanced_batch(_rows_buffer(200), jax.random.PRNGKey(0), 64, offline_rows=100, size=130)
    rows = np.asarray(batch["row"])
    assert (rows[:32] < 100).all() and (rows[32:] >= 100).all() and (rows[32:] < 130).all()


def test_the_online_step_of_a_balanced_learner_draws_half_of_each_batch_from_the_dataset() -> None:
    class Config:
        batch_size = 16

    def update(config, state, batch):  # records where the batch came from
        offline = jnp.sum(batch["row"] < 100)
        return state, {"offline": offline, "online_max": batch["row"].max(), "online_min": batch["row"][8:].min()}

    step = online_update_fn(update, Config(), utd=3, offline_rows=100)
    state = rlpd.init(make_config("rlpd", overrides=TINY), 1, 1, jax.random.PRNGKey(0))
    transition = {"row": np.float32(103), "actions": np.zeros(1, np.float32)}
    buffer = _rows_buffer(200) | {"next_actions": jnp.zeros((200, 1))}
    _, _, metrics = step(state, buffer, transition, 103, 104)
    assert np.asarray(metrics["offline"]).tolist() == [8, 8, 8]
    assert (np.asarray(metrics["online_min"]) >= 100).all() and (np.asarray(metrics["online_max"]) <= 103).all()


def test_rlpd_refuses_an_offline_phase_before_any_work() -> None:
    config = make_config("rlpd")
    with pytest.raises(ValueError, match=r"rlpd has no offline pretraining.*set offline_steps to 0"):
        check_run("rlpd", config, offline_steps=1000, online_steps=1000)
    check_run("rlpd", config, offline_steps=0, online_steps=1000)
