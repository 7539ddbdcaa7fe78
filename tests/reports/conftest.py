"""Run directories with numbers chosen in each test, written through flowsteer.rundir (the run loop's own writer)
in the shape of the run loop's files: config.json, protocol.json (every field the loop records), eval.csv,
status.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowsteer.rundir import EVAL_LOG, RunDirectory

WriteRun = Callable[..., Path]
# The packages whose versions the run loop records (flowsteer.platform.loop.protocol).
VERSIONS = {
    "flowsteer": "0.1.0",
    "jax": "0.10.2",
    "jaxlib": "0.10.2",
    "flax": "0.12.8",
    "optax": "0.2.8",
    "ogbench": "1.2.2",
    "mujoco": "4.0.0",
    "gymnasium": "1.4.0",
    "numpy": "2.4.6",
}


def _protocol(algo: str, task: str, seed: int, steps: list[int], offline: int, online: int, **over: Any) -> dict:
    source = over.pop("source", "official")
    dataset: dict[str, Any] = {"source": source, "dataset": task.split("-singletask")[0] + "-v0"}
    if source == "generated":
        dataset["generator"] = {"episodes": over.pop("episodes", 1000), "seed": 0, "episode_steps": 1001}
    versions = VERSIONS | {"ogbench": over.pop("ogbench", VERSIONS["ogbench"])} | over.pop("versions", {})
    return {
        "run_id": f"{algo}-{task}-s{seed}",
        "algo": algo,
        "task": task,
        "setting": "offline-to-online" if online else "offline",
        "seed": seed,
        "seeds": {"learner": f"PRNGKey({seed})"},
        "offline_steps": offline,
        "online_steps": online,
        "utd": 1,
        "evaluation": {"interval": steps[0], "episodes": over.pop("episodes_per_eval", 50), "steps": steps},
        "success_timing": "pre",
        "dataset": dataset,
        "algo_config": {},
        "versions": versions,
        "python": "3.11.14",
        "platform": "Linux",
        "device": "TFRT_CPU_0",
        "git_sha": over.pop("git_sha", None),
    }


def eval_row(step: int, success: float) -> dict[str, float]:
    """One eval.csv row as the run loop logs it (flowsteer.workers.rollout.summarize, 50 episodes)."""
    return {"step": step, "episode_length": 100.0, "episode_return": -100.0 + success, "episodes": 50.0,
            "success": success}  # fmt: skip


@pytest.fixture
def write_run(tmp_path: Path) -> WriteRun:
    """write_run(algo, task, seed, {step: success}, ...) -> the run directory under tmp_path/runs."""

    def write(
        algo: str,
        task: str,
        seed: int,
        success: dict[int, float],
        *,
        offline_steps: int | None = None,
        online_steps: int = 0,
        hyperparameters: dict[str, Any] | None = None,
        extra_rows: list[tuple[int, float]] = (),
        root: Path | None = None,
        name: str | None = None,
        run_fields: dict[str, Any] | None = None,
        **protocol: Any,
    ) -> Path:
        steps = sorted(success)
        offline = offline_steps if offline_steps is not None else steps[-1]
        run_id = f"{algo}-{task}-s{seed}"
        if hyperparameters:
            run_id += "-" + "-".join(f"{k}{v}" for k, v in sorted(hyperparameters.items()))
        run_id = name or run_id
        path = (root or tmp_path / "runs") / run_id
        path.mkdir(parents=True)
        spec = {
            "algo": algo,
            "task": task,
            "seed": seed,
            "hyperparameters": hyperparameters or {},
            "offline_steps": offline,
            "online_steps": online_steps,
            "eval_episodes": 50,
            "setting": "offline-to-online" if online_steps else "offline",
        } | (run_fields or {})
        run = RunDirectory(path)
        run.write_config({"run": spec, "run_id": run_id, "algo_config": {}})
        run.write_protocol(_protocol(algo, task, seed, steps, offline, online_steps, **protocol))
        for step, value in [(s, success[s]) for s in steps] + list(extra_rows):
            run.append_row(EVAL_LOG, eval_row(step, value))
        run.set_status("finished", step=steps[-1])
        return path

    return write
