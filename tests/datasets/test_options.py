"""Task options (docs/algorithms.md#ogbench-options): QC's sparse reward on the data and on every environment, and
when OGBench computes reward and success, on the real environments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from flowsteer.datasets import OfflineTask, catalog, load_task, make_env
from flowsteer.datasets.options import TaskOptions, effective_timing, sparse_rewards, subtasks

PUZZLE = "puzzle-3x3-play-singletask-task4-v0"  # reward = #solved buttons - 9
MAZE = "pointmaze-medium-navigate-singletask-task1-v0"  # reward = success - 1; the goal counts within 1.0


@pytest.fixture(scope="module")
def puzzle(puzzle_cache: Path) -> Iterator[Callable[[TaskOptions], OfflineTask]]:
    """puzzle(options) -> the puzzle task loaded under options (each loaded once per module)."""
    loaded: dict[TaskOptions, OfflineTask] = {}

    def load(options: TaskOptions) -> OfflineTask:
        if options not in loaded:
            loaded[options] = load_task(PUZZLE, cache_dir=puzzle_cache, source="generated", episodes=1,
                                        episode_steps=101, progress=False, options=options)  # fmt: skip
        return loaded[options]

    yield load
    for task in loaded.values():
        task.env.close()


def test_the_sparse_map_sends_every_unsolved_reward_to_minus_one_and_keeps_zero() -> None:
    rewards = np.array([-9.0, -4.0, -1.0, 0.0, -2.0], np.float32)
    mapped = sparse_rewards(rewards)
    np.testing.assert_array_equal(mapped, [-1.0, -1.0, -1.0, 0.0, -1.0])
    assert mapped.dtype == np.float32


def test_sparse_reward_maps_a_puzzle_datasets_rewards_and_keeps_its_masks(puzzle) -> None:
    plain, sparse = puzzle(TaskOptions()), puzzle(TaskOptions(sparse_reward=True))
    for split in ("train", "val"):
        raw, mapped = getattr(plain, split), getattr(sparse, split)
        assert raw["rewards"].min() < -1  # buttons partly solved: the map must change something
        np.testing.assert_array_equal(mapped["rewards"], -1.0 * (raw["rewards"] != 0))
        for key in ("masks", "terminals", "observations", "actions"):
            np.testing.assert_array_equal(mapped[key], raw[key])


@pytest.mark.parametrize("made_by", ["make_env", "load_task"])  # evaluation envs; the online env of a run
def test_sparse_reward_maps_a_puzzle_environments_step_reward(puzzle, made_by: str) -> None:
    def env(options: TaskOptions):
        return make_env(PUZZLE, options) if made_by == "make_env" else puzzle(options).env

    plain, sparse = env(TaskOptions()), env(TaskOptions(sparse_reward=True))
    plain.reset(seed=0)
    sparse.reset(seed=0)
    _, raw, raw_terminated, _, raw_info = plain.step(np.zeros(5))
    _, mapped, terminated, _, info = sparse.step(np.zeros(5))
    assert raw < -1 and mapped == -1.0
    assert terminated == raw_terminated and info["success"] == raw_info["success"]
    if made_by == "make_env":
        plain.close()
        sparse.close()


def test_the_dataset_does_not_depend_on_the_success_timing(puzzle) -> None:
    # Official and generated files are relabelled from each row's own state in every ogbench version.
    pre, post = puzzle(TaskOptions()), puzzle(TaskOptions(success_timing="post"))
    for key in ("rewards", "masks"):
        np.testing.assert_array_equal(pre.train[key], post.train[key])
    assert (effective_timing(pre.env), effective_timing(post.env)) == ("pre", "post")


def _steps_to_goal(timing: str) -> list[tuple[float, bool, float]]:
    """(reward, terminated, success) of each step of a point mass driven straight into its goal from 1.5 away."""
    env = make_env(MAZE, TaskOptions(success_timing=timing))
    env.reset(seed=0)
    maze = env.unwrapped
    goal = np.asarray(maze.cur_goal_xy)
    maze.set_xy(goal - np.array([1.5, 0.0]))  # inside the goal's cell, no wall in between
    steps = []
    for _ in range(20):
        _, reward, terminated, _, info = env.step(np.array([1.0, 0.0]))
        steps.append((float(reward), bool(terminated), float(info["success"])))
        if terminated:
            break
    env.close()
    return steps


def test_post_timing_rewards_the_step_that_reaches_the_goal_and_pre_the_step_after() -> None:
    post, pre = _steps_to_goal("post"), _steps_to_goal("pre")
    assert post[-1] == pre[-1] == (0.0, True, 1.0)  # reward, termination and success come together
    assert len(pre) == len(post) + 1  # pre: the step from the solved state reports it
    assert pre[len(post) - 1] == (-1.0, False, 0.0)  # the step that reached the goal, under 'pre'
    assert _steps_to_goal("default") == pre  # ogbench 1.2.2 registers its single-task envs with 'pre'


@pytest.mark.parametrize("family", ["cube-double", "scene", "puzzle-4x4"])
def test_subtask_counts_are_the_terms_of_the_environments_own_reward(family: str) -> None:
    task = catalog.parse_task(f"{family}-play-singletask-v0")
    env = make_env(task.name)
    env.reset(seed=0)
    successes = env.unwrapped._compute_successes()  # scene: (cubes, buttons, drawer, window)
    terms = sum(len(s) if isinstance(s, list) else 1 for s in successes) if family == "scene" else len(successes)
    assert subtasks(task) == terms
    env.close()
