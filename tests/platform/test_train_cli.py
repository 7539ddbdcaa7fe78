"""`flowsteer train` as a user runs it: a summary at the end, one clear line for every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.cli import build_parser
from flowsteer.cli.train import spec_from_args

pytestmark = pytest.mark.integration  # `flowsteer train` subprocesses

TASK = "cube-single-play-singletask-task2-v0"


def flowsteer(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowsteer", *args],
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_short_run_prints_where_its_results_are(tmp_path: Path, smoke_cache: Path) -> None:
    result = flowsteer(
        "train", "--algo", "bc", "--task", TASK, "--offline-steps", "40", "--eval-interval", "40",
        "--eval-episodes", "2", "--eval-envs", "2", "--log-interval", "20", "--chunk-size", "20",
        "--hp", "batch_size=32", "--hp", "actor_hidden_dims=[32, 32]", "--source", "generated",
        "--episodes", "4", "--cache-dir", str(smoke_cache), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "bc on cube-single-play-singletask-task2-v0, seed 0, offline" in out
    assert "finished at step 40" in out and "last evaluation (step 40): success 0.000" in out
    assert f"MLflow    sqlite:///{tmp_path}/mlflow.db" in out
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and str(run_dirs[0]) in out


def test_seeds_train_one_group_into_the_run_directories_of_the_single_runs(tmp_path: Path, smoke_cache: Path) -> None:
    run = [
        "--algo", "bc", "--task", TASK, "--offline-steps", "40", "--eval-interval", "40", "--eval-episodes", "2",
        "--eval-envs", "2", "--log-interval", "20", "--chunk-size", "20", "--hp", "batch_size=32",
        "--hp", "actor_hidden_dims=[32, 32]", "--source", "generated", "--episodes", "4",
        "--cache-dir", str(smoke_cache),
    ]  # fmt: skip
    result = flowsteer("train", *run, "--seeds", "0-1", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    singles = [spec_from_args(build_parser().parse_args(["train", *run, "--seed", str(seed)])) for seed in (0, 1)]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(s.run_id for s in singles)
    for single in singles:
        line = next(line for line in result.stdout.splitlines() if single.run_id in line)
        assert f"seed {single.seed}" in line and "finished at step 40" in line and "last success" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "fqll", "--task", TASK], "algo 'fqll' is unknown. Did you mean fql"),
        (["--algo", "fql"], "--task is required"),
        (["--algo", "fql", "--task", TASK, "--hp", "alpha"], "--hp expects NAME=VALUE"),
        (["--algo", "fql", "--task", TASK, "--hp", "alhpa=3"], "unknown hyperparameter(s) for fql: 'alhpa'"),
        (["--algo", "iql", "--task", "cube-single-play-singletask-task8-v0"], "tasks 1..5, not 8"),
        (["--algo", "iql", "--task", TASK, "--eval-episodes", "-5"], "eval_episodes must be an integer >= 0"),
        (["--algo", "iql", "--task", "antmaze-large-navigate-singletask-v0"], "not on this machine"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = flowsteer("train", *args, "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_config_file_with_an_unknown_field_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"algo: fql\ntask: {TASK}\nofline_steps: 10\n")
    result = flowsteer("train", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "unknown run field 'ofline_steps'. Did you mean offline_steps" in result.stderr


def test_steering_a_base_policy_file_from_the_command_line(
    tmp_path: Path, smoke_cache: Path, torch_policy_file: Path
) -> None:
    result = flowsteer(
        "train", "--algo", "dsrl_sac", "--task", TASK, "--offline-steps", "0", "--online-steps", "30",
        "--eval-interval", "30", "--eval-episodes", "1", "--eval-envs", "1", "--log-interval", "10",
        "--hp", f"base_policy={torch_policy_file}", "--hp", "warmup_steps=20", "--hp", "batch_size=8",
        "--hp", "actor_hidden_dims=[32, 32]", "--hp", "value_hidden_dims=[32, 32]", "--source", "generated",
        "--episodes", "4", "--cache-dir", str(smoke_cache), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "finished at step 30" in result.stdout


def test_a_base_policy_file_that_does_not_load_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a TorchScript archive")
    result = flowsteer(
        "train", "--algo", "dsrl_sac", "--task", TASK, "--offline-steps", "0", "--online-steps", "100",
        "--hp", f"base_policy={broken}", "--hp", "warmup_steps=20", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert str(broken) in result.stderr and "Traceback" not in result.stderr
