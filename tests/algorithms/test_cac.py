"""CAC's consistency model against hand-computed values, and its update's order and EMA schedule
(docs/algorithms.md#cac)."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, random_transitions

from flowsteer.algorithms import cac, make_config, to_device_dataset
from flowsteer.algorithms.hyperparameters import RULES

TINY = {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16), "batch_size": 8, "backup_samples": 3}


def np_boundary(i: int, n: int) -> float:
    """Karras et al. (2022) Eq. 5 with σ_min = 0.002, σ_max = 80, ρ = 7, in float64."""
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    return (lo + i / (n - 1) * (hi - lo)) ** 7


def test_boundary_condition_and_hand_values_of_c_skip_and_c_out():
    t = jnp.array([0.002, 0.502, 80.0])
    # t = ε: f(x, ε) = x. t = 0.5 + ε: c_skip = 0.25 / (0.25 + 0.25) = 0.5, c_out = 0.25 / √(0.502² + 0.25).
    expected_skip = [1.0, 0.5, 0.25 / (79.998**2 + 0.25)]
    expected_out = [0.0, 0.25 / np.sqrt(0.502**2 + 0.25), 0.5 * 79.998 / np.sqrt(6400.25)]
    np.testing.assert_allclose(cac.c_skip(t), expected_skip, rtol=1e-5)
    np.testing.assert_allclose(cac.c_out(t), expected_out, rtol=1e-5, atol=1e-7)


def test_karras_boundaries_run_from_eps_to_80():
    two = cac.karras_boundary(jnp.arange(2), jnp.int32(2))
    np.testing.assert_allclose(two, [0.002, 80.0], rtol=1e-5)
    five = cac.karras_boundary(jnp.arange(5), jnp.int32(5))
    np.testing.assert_allclose(five, [np_boundary(i, 5) for i in range(5)], rtol=1e-5)


@pytest.mark.parametrize(
    ("step", "expected"),
    # The reference's `timesteps_schedule(k, 50_000)` at these chunk-local iterations (2 → 150, then a restart).
    [(0, 2), (1, 3), (100, 7), (1_000, 22), (10_000, 68), (25_000, 107), (49_999, 150), (50_000, 2), (51_000, 22)],
)
def test_discretisation_count_ramps_over_the_period_then_restarts(step, expected):
    assert int(cac.num_scales(jnp.int32(step), 50_000)) == expected


def test_scaled_consistency_loss_matches_numpy():
    rng = np.random.default_rng(0)
    w_online, w_teacher = rng.normal(size=(2, ACT_DIM, ACT_DIM))
    actions = rng.uniform(-1, 1, size=(3, ACT_DIM))
    noise = rng.normal(size=(3, ACT_DIM))
    index, scales = np.array([[0], [1], [3]]), 5  # index 3 pairs b_3 with b_4 = 80

    def f(w: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The consistency function around a linear F(x, t) = x·W + 0.1·t, in float64."""
        skip = 0.25 / ((t - 0.002) ** 2 + 0.25)
        out = 0.5 * (t - 0.002) / np.sqrt(t**2 + 0.25)
        return skip * x + out * (x @ w + 0.1 * t)

    t1 = np.array([[np_boundary(i, scales)] for i in index[:, 0]])
    t2 = np.array([[np_boundary(i + 1, scales)] for i in index[:, 0]])
    squared = (f(w_online, actions + t2 * noise, t2) - f(w_teacher, actions + t1 * noise, t1)) ** 2
    expected = np.mean(100.0 / (t2 - t1) * squared)

    def net(w: np.ndarray):
        return lambda x, t: x @ jnp.asarray(w, jnp.float32) + 0.1 * t

    as32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    loss = cac.consistency_loss(
        net(w_online), net(w_teacher), as32(actions), as32(noise), jnp.asarray(index), jnp.int32(scales)
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


@pytest.fixture(scope="module")
def run() -> tuple[cac.CACConfig, dict, list, list]:
    """(config, batch, the states after 0..7 updates on that one batch, the metrics of each update); the EMA
    starts at update 3 and moves every 2nd update, so 7 updates show both phases."""
    config = cac.CACConfig(**TINY, ema_start=3, ema_every=2)
    batch = to_device_dataset(random_transitions(8))
    step = jax.jit(lambda s: cac.update(config, s, batch))
    states, metrics = [cac.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))], []
    for _ in range(7):
        state, info = step(states[-1])
        states.append(state)
        metrics.append(info)
    return config, batch, states, metrics


@pytest.mark.xdist_group("cac-run")  # one xdist worker runs the updates once
@pytest.mark.integration  # shares one compiled update (over ~10 s on 2 busy cores)
def test_actor_step_sees_the_critic_updated_in_the_same_iteration(run):
    config, batch, states, metrics = run
    state, new = states[0], states[1]
    _, _, actor_key = jax.random.split(state.rng, 3)  # the update's own key split
    scales = cac.num_scales(state.step, config.discretization_period)
    loss = jax.jit(lambda p: cac.actor_loss(config, p, state.target_params, batch, actor_key, scales)[0])
    with_new_critic = float(loss({"actor": state.params["actor"], "critic": new.params["critic"]}))
    with_old_critic = float(loss(state.params))
    np.testing.assert_allclose(float(metrics[0]["actor/actor_loss"]), with_new_critic, rtol=1e-5)
    assert with_old_critic != pytest.approx(float(metrics[0]["actor/actor_loss"]), rel=1e-5)


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.xdist_group("cac-run")  # one xdist worker runs the updates once
@pytest.mark.integration  # shares one compiled update (over ~10 s on 2 busy cores)
def test_ema_policy_keeps_the_initial_weights_before_ema_start(run):
    _, _, states, _ = run
    # Updates 0 and 2 are multiples of ema_every but come before ema_start: the EMA is still the initial actor.
    assert same(states[3].target_params["actor"], states[0].params["actor"])
    assert not same(states[3].params["actor"], states[0].params["actor"])


@pytest.mark.xdist_group("cac-run")  # one xdist worker runs the updates once
@pytest.mark.integration  # shares one compiled update (over ~10 s on 2 busy cores)
def test_ema_policy_moves_every_ema_every_updates_from_ema_start_toward_the_updated_actor(run):
    _, _, states, _ = run
    moved = [not same(states[i + 1].target_params["actor"], states[i].target_params["actor"]) for i in range(7)]
    assert moved == [False, False, False, False, True, False, True]  # update i moves it when i % 2 == 0, i >= 3
    expected = jax.tree.map(
        lambda ema, new: 0.995 * ema + 0.005 * new, states[4].target_params["actor"], states[5].params["actor"]
    )
    for x, y in zip(jax.tree.leaves(states[5].target_params["actor"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_every_numeric_field_has_a_range_rule_and_bad_values_are_refused():
    numeric = [
        f.name for f in dataclasses.fields(cac.CACConfig) if not isinstance(getattr(cac.CACConfig(), f.name), bool)
    ]
    unruled = [name for name in numeric if not any(re.fullmatch(pattern, name) for pattern, _, _ in RULES)]
    assert unruled == []
    for name, bad in [("eta", -1.0), ("backup_samples", 0), ("ema_start", -1), ("discretization_period", 0)]:
        with pytest.raises(ValueError, match=name):
            make_config("cac", overrides={name: bad})
