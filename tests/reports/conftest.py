"""Hand-written run directories: the files the run loop writes, with numbers chosen in each test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WriteRun = Callable[..., Path]


def _protocol(algo: str, task: str, seed: int, steps: list[int], offline: int, online: int, **over: Any) -> dict:
    source = over.pop("source", "official")
    dataset: dict[str, Any] = {"source": source, "dataset": task.split("-singletask")[0] + "-v0"}
    if source == "generated":
        dataset["generator"] = {"episodes": over.pop("episodes", 1000), "seed": 0, "episode_steps": 1001}
    versions = {"ogbench": over.pop("ogbench", "1.2.2"), "jax": "0.10.2", "flowsteer": "0.1.0"}
    versions |= over.pop("versions", {})
    commit = {"git_sha": over.pop("git_sha")} if "git_sha" in over else {}
    return commit | {
        "run_id": f"{algo}-{task}-s{seed}",
        "algo": algo,
        "task": task,
        "seed": seed,
        "setting": "offline-to-online" if online else "offline",
        "offline_steps": offline,
        "online_steps": online,
        "evaluation": {"interval": steps[0], "episodes": over.pop("episodes_per_eval", 50), "steps": steps},
        "success_timing": "pre",
        "dataset": dataset,
        "versions": versions,
    }


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
        (path / "config.json").write_text(json.dumps({"run": spec, "run_id": run_id, "algo_config": {}}))
        prot = _protocol(algo, task, seed, steps, offline, online_steps, **protocol)
        (path / "protocol.json").write_text(json.dumps(prot))
        lines = ["step,episode_length,episode_return,episodes,success"]
        rows = [(s, success[s]) for s in steps] + list(extra_rows)
        lines += [f"{float(s)},100.0,{-100.0 + v},50.0,{v!r}" for s, v in rows]
        (path / "eval.csv").write_text("\n".join(lines) + "\n")
        (path / "status.json").write_text(json.dumps({"state": "finished", "step": steps[-1]}))
        return path

    return write
