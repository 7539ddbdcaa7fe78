"""A run's task options (docs/algorithms.md#ogbench-options) reach its evaluation environments and its protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowsteer.cli import build_parser
from flowsteer.cli.train import spec_from_args
from flowsteer.datasets import load_task
from flowsteer.datasets.options import effective_timing
from flowsteer.datasets.sparse_env import SparseReward
from flowsteer.platform.evaluation import Evaluator
from flowsteer.platform.loop import protocol
from flowsteer.platform.spec import RunSpec

from .conftest import TINY

PUZZLE = "puzzle-3x3-play-singletask-task4-v0"


def _spec(puzzle_cache: Path, **options: Any) -> RunSpec:
    data = {"source": "generated", "episodes": 1, "episode_steps": 101, "cache_dir": str(puzzle_cache)}
    schedule = {"offline_steps": 20, "eval_interval": 20, "eval_episodes": 1, "eval_envs": 1}
    return RunSpec.from_dict({"algo": "fql", "task": PUZZLE, "hyperparameters": TINY["fql"], "data": data, **schedule,
                              **options})  # fmt: skip


@pytest.mark.parametrize(
    ("options", "recorded"),
    [
        ({}, (False, "pre", "r = #solved subtasks - 9 in {-9, ..., 0} (OGBench's single-task reward)")),
        (
            {"sparse_reward": True, "success_timing": "post"},
            (True, "post", "r = -1·[r_ogbench != 0] = success - 1 in {-1, 0} (QC/QAM --sparse)"),
        ),
    ],
)
def test_the_protocol_records_the_reward_and_when_ogbench_computes_it(puzzle_cache: Path, options, recorded) -> None:
    spec = _spec(puzzle_cache, **options)
    task = load_task(spec.task, progress=False, options=spec.task_options(), **spec.data.model_dump())
    facts = protocol(spec, spec.algo_config(), task)
    task.env.close()
    sparse, timing, rule = recorded
    assert (facts["sparse_reward"], facts["success_timing"]) == (sparse, timing)
    assert facts["reward"].startswith(rule)
    assert f"from the state {'after' if timing == 'post' else 'before'} the action ('{timing}')" in facts["reward"]


def test_evaluation_environments_get_the_runs_task_options(puzzle_cache: Path) -> None:
    spec = _spec(puzzle_cache, sparse_reward=True, success_timing="post")
    with Evaluator(spec, spec.algo_config()) as evaluator:
        env = evaluator.workers[0].envs[0]
        assert isinstance(env, SparseReward) and effective_timing(env) == "post"


def test_the_train_command_line_sets_the_task_options() -> None:
    args = build_parser().parse_args(["train", "--algo", "fql", "--task", PUZZLE, "--sparse-reward",
                                      "--success-timing", "post"])  # fmt: skip
    spec = spec_from_args(args)
    assert (spec.sparse_reward, spec.success_timing) == (True, "post")
    plain = spec_from_args(build_parser().parse_args(["train", "--algo", "fql", "--task", PUZZLE]))
    assert (plain.sparse_reward, plain.success_timing) == (False, "default")
