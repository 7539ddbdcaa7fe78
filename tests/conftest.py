"""Fixtures shared by every test package: one small generated OGBench dataset per session, and one JAX
compilation cache per session."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

# One persistent compilation cache for the whole session: this process, the CLI subprocesses and the Ray workers
# the tests start (they inherit the environment) compile each program once instead of once per run. Set before
# anything imports JAX, which reads its settings from the environment. An entry is found only by XLA's hash of
# the program, its compile options and the jax/jaxlib versions, so a changed program never gets a stale one; the
# cache lives in a fresh directory removed when the session ends, so nothing carries over between test runs.
JAX_CACHE = Path(tempfile.mkdtemp(prefix="flowsteer-tests-jax-cache-"))
JAX_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": str(JAX_CACHE),
    "jax_persistent_cache_min_compile_time_secs": 0,  # the tests' tiny programs compile in well under 1 s
    "jax_persistent_cache_min_entry_size_bytes": -1,  # every entry, whatever its size
}
os.environ.update({name.upper(): str(value) for name, value in JAX_CACHE_SETTINGS.items()})
if "jax" in sys.modules:  # a pytest plugin imported it first: it read the environment already
    import jax

    for name, value in JAX_CACHE_SETTINGS.items():
        jax.config.update(name, value)

from flowsteer.datasets.build import build_dataset  # noqa: E402 (after the cache settings)
from flowsteer.datasets.generate import GenerationSpec  # noqa: E402

SMOKE = GenerationSpec("cube-single-play-v0", episodes=4, seed=0, episode_steps=201)  # as in test_generate
SMOKE_TASK = "cube-single-play-singletask-task2-v0"


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding SMOKE (cube-single, 4 + 1 episodes of 201 rows), generated once per session."""
    root = tmp_path_factory.mktemp("smoke-cache")
    build_dataset(SMOKE, root, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def smoke_dir(smoke_cache: Path) -> Path:
    return smoke_cache / "ogbench" / SMOKE.cache_key


# Torch base policies for DSRL-SAC to steer (tests/policies, tests/platform/test_external_base_runs.py, sweeps):
# flowsteer's own DDPM trainer on the smoke dataset, tiny (three layers of 32), 200 updates: about a second each.
TINY_TORCH_POLICY = {"hidden_dims": (32, 32, 32), "batch_size": 64, "steps": 200}


@pytest.fixture(scope="session")
def smoke_data(smoke_cache: Path) -> dict[str, Any]:
    """The smoke task's training arrays (cube-single task 2, 4 episodes of 201 rows)."""
    from flowsteer.datasets.load import load_task

    task = load_task(SMOKE_TASK, source="generated", episodes=4, episode_steps=201, cache_dir=smoke_cache,
                     progress=False)  # fmt: skip
    task.env.close()
    return task.train


def _train_torch_policy(data: dict[str, Any], seed: int, obs_columns: int | None = None) -> Any:
    from flowsteer.policies.ddpm import train_ddpm_policy

    observations = data["observations"][:, :obs_columns]
    return train_ddpm_policy(observations, data["actions"], data["terminals"], seed=seed, **TINY_TORCH_POLICY)


def _saved(trained: Any, path: Path) -> Path:
    from flowsteer.policies.torch_policy import save_torchscript_policy

    save_torchscript_policy(trained.sampler, trained.metadata, path)
    return path


@pytest.fixture(scope="session")
def torch_policy(smoke_data: dict[str, Any]) -> Any:
    """A tiny torch DDIM policy trained on the smoke data (seed 0): a `TrainedPolicy`."""
    return _train_torch_policy(smoke_data, seed=0)


@pytest.fixture(scope="session")
def torch_policy_file(torch_policy: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`torch_policy` written as `flowsteer base-policy train` writes it."""
    return _saved(torch_policy, tmp_path_factory.mktemp("torch-policy") / "cube-single.pt")


@pytest.fixture(scope="session")
def other_torch_policy_file(smoke_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shapes, other weights (seed 1)."""
    return _saved(_train_torch_policy(smoke_data, seed=1), tmp_path_factory.mktemp("torch-policy") / "s1.pt")


@pytest.fixture(scope="session")
def narrow_torch_policy_file(smoke_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy that reads the first 10 of the task's 28 observation entries: it fits no cube-single run."""
    trained = _train_torch_policy(smoke_data, seed=0, obs_columns=10)
    return _saved(trained, tmp_path_factory.mktemp("torch-policy") / "narrow.pt")


# A puzzle task's reward counts nine buttons (-9..0): the task options' sparse reward changes it, unlike cube-single's.
PUZZLE_SMOKE = GenerationSpec("puzzle-3x3-play-v0", episodes=1, seed=0, episode_steps=101)


@pytest.fixture(scope="session")
def puzzle_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding PUZZLE_SMOKE (puzzle-3x3, 1 + 1 episodes of 101 rows; about 4 s), generated once per session."""
    root = tmp_path_factory.mktemp("puzzle-cache")
    build_dataset(PUZZLE_SMOKE, root, workers=1, progress=False)
    return root


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Drop the programs a test module compiled when it ends. Without this an xdist worker holds every program of
    the ~800 tests it ran (7 GB per worker, seen on a fresh clone), enough to let Ray's memory monitor kill trials
    of the sweep tests; recompiling in a later module reads the persistent cache above."""
    yield
    import jax

    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def no_tracking_uri_leak():
    """`mlflow.set_tracking_uri` (a few tests read a sweep's store with it) also sets $MLFLOW_TRACKING_URI for the
    whole process, so every later `flowsteer` subprocess of the same xdist worker would track into that test's
    store instead of its own default. Each test gets the variable back as it found it."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(JAX_CACHE, ignore_errors=True)


# Tests that start Ray clusters (sweeps, the infra checks, evaluation through Ray workers) run one after another in
# one xdist worker (scripts/test.sh runs `-n 2 --dist loadgroup`): two local clusters at once would compete for
# the same cores and the same sweep core leases; every other test spreads over both workers, one test at a time,
# so a module-scoped fixture is built once per worker that runs one of its tests: tests that share an expensive
# one take an xdist_group of their own (tests/platform/test_resume.py), and it is built once.
RAY_CLUSTER_TESTS = ("tests/sweeps/", "tests/infra/", "tests/platform/test_evaluation.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix()
        if where.startswith(RAY_CLUSTER_TESTS):
            item.add_marker(pytest.mark.xdist_group("ray-cluster"))
