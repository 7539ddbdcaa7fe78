"""Q-chunking learns a long-horizon task faster than single-step FQL (Li, Zhou, Levine 2025, Sec. 4-5).

The task: a point on a corridor [0, 1] starts at 0 and must reach the goal at 1; each action a ∈ [−1, 1] moves it
by SPEED·a, so the shortest path takes 50 steps, and an episode ends after 100. The reward is −1 per step until the
goal (the OGBench form r = success − 1), where the episode terminates. The offline data come from a behaviour that
moves in bursts of a few steps in a random direction, from random starts along the corridor: its actions average
to standing still, so a policy that only imitates them never gets from 0 to the goal, and every success comes from
a critic that has learned which way the goal lies.

That knowledge spreads back from the goal one backup at a time. A single-step critic (FQL, H = 1) moves it one
step per backup; a chunked critic (QC-FQL, H = 5) bootstraps from the state H steps later, with the H-step reward
sum (docs/chunking.md#sequence-batches), so it moves it H steps per backup (the paper's argument for chunking:
unbiased n-step backups, Sec. 4). With the same updates, seed and networks, the chunked learner has a critic that
points to the goal from the start while the single-step one does not yet. Both are trained by flowsteer's Learner
and evaluated by its rollout code, the chunked one open loop (one policy call per H steps).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from flowsteer.algorithms import make_config
from flowsteer.workers.learner import Learner
from flowsteer.workers.rollout import make_policy, run_episodes, summarize

pytestmark = pytest.mark.integration  # two learners of 3000 updates, 40 episodes each: 48-87 s on 2 busy cores

SPEED = 0.02  # distance per step at |a| = 1: the goal is 1 / SPEED = 50 steps from the start
TIME_LIMIT = 100  # steps per evaluation episode
DATA_EPISODES, DATA_LENGTH = 200, 100


class Corridor(gym.Env):
    """A point on [0, 1]: x ← clip(x + SPEED·a, 0, 1); reward −1 per step, 0 and termination at the goal x = 1."""

    def __init__(self, time_limit: int = TIME_LIMIT) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.time_limit = time_limit
        self.x, self.t = 0.0, 0

    def _obs(self) -> np.ndarray:
        return np.array([2.0 * self.x - 1.0], np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x = float(options["start"]) if options else 0.0
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.x = min(max(self.x + SPEED * float(np.asarray(action).reshape(-1)[0]), 0.0), 1.0)
        self.t += 1
        success = self.x >= 1.0
        return self._obs(), 0.0 if success else -1.0, success, self.t >= self.time_limit, {"success": float(success)}


def burst_dataset(seed: int, episodes: int = DATA_EPISODES, length: int = DATA_LENGTH) -> dict[str, np.ndarray]:
    """Episodes of `length` steps of the bursty behaviour from uniform starts: each burst holds a random direction
    ±1 (plus noise) for 3 to 8 steps. Labelled as OGBench labels its datasets (docs/chunking.md#sequence-batches):
    an episode goes on past the goal, mask = 0 where the step reaches it, terminal only at the episode's end."""
    rng = np.random.default_rng(seed)
    env = Corridor()
    rows: dict[str, list[Any]] = {
        k: [] for k in ("observations", "actions", "rewards", "masks", "terminals", "next_observations")
    }
    for _ in range(episodes):
        obs, _ = env.reset(options={"start": rng.uniform(0.0, 1.0)})
        burst, direction = 0, 1.0
        for t in range(length):
            if burst == 0:
                burst, direction = int(rng.integers(3, 9)), float(rng.choice([-1.0, 1.0]))
            action = np.clip(direction + 0.3 * rng.normal(size=1), -1.0, 1.0).astype(np.float32)
            burst -= 1
            next_obs, reward, at_goal, _, _ = env.step(action)
            for key, value in (
                ("observations", obs),
                ("actions", action),
                ("rewards", reward),
                ("masks", 1.0 - float(at_goal)),
                ("terminals", float(t == length - 1)),
                ("next_observations", next_obs),
            ):
                rows[key].append(value)
            obs = next_obs
    return {k: np.asarray(v, np.float32) for k, v in rows.items()}


# Tiny networks and batch. τ = 0.01 (FQL's 0.005 doubled) lets each backup reach the target sooner, so both learners
# need fewer updates; α = 1 lets the Q gradient move the one-step policy off the behaviour's average within them.
CONFIG = {"actor_hidden_dims": (64, 64), "value_hidden_dims": (64, 64), "batch_size": 64, "alpha": 1.0, "tau": 0.01}
# After 3000 updates, QC-FQL reached the goal in 100%, 100% and 95% of 40 episodes (seeds 0, 1, 2 of learner and
# data), FQL in 0% for each: its critic still saw no way to the goal from the first half of the corridor. FQL is
# slower, not unable: with five times the updates (15000, seed 0) it reached the goal in 7.5% of the episodes.
STEPS, SEED, EPISODES = 3000, 0, 40


def train_and_evaluate(action_chunk: int, seed: int = SEED) -> dict[str, float]:
    """Train FQL (QC-FQL for H > 1) offline on the burst data with flowsteer's Learner; evaluate it from the
    corridor's start with flowsteer's rollouts (a chunk policy open loop)."""
    config = make_config("fql", overrides=CONFIG, action_chunk=action_chunk)
    learner = Learner("fql", config, burst_dataset(seed), seed=seed, chunk_size=STEPS)
    learner.train(STEPS)
    policy = make_policy("fql", config, learner.policy_state())
    envs = [Corridor() for _ in range(EPISODES // 4)]
    return summarize(run_episodes(policy, envs, range(EPISODES), seed=seed))


def test_chunked_fql_reaches_a_distant_goal_that_single_step_fql_does_not_yet():
    chunked, single = train_and_evaluate(action_chunk=5), train_and_evaluate(action_chunk=1)
    assert chunked["success"] - single["success"] >= 0.5, f"QC-FQL (H = 5) {chunked}, FQL (H = 1) {single}"
