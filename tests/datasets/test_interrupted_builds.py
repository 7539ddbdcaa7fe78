"""A generation killed or interrupted at any moment leaves nothing that looks complete and loses nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flowsteer.datasets import load_task
from flowsteer.datasets.build import TRAIN_FILE
from flowsteer.datasets.generate import GenerationSpec
from flowsteer.datasets.npzfile import sha256
from flowsteer.datasets.store import find_generated, list_generated

pytestmark = pytest.mark.integration  # dataset builds killed and interrupted in subprocesses

SLOW = GenerationSpec("cube-single-play-v0", episodes=40, seed=0, episode_steps=201)


def _generate_command(cache: Path) -> list[str]:
    command = [sys.executable, "-m", "flowsteer", "data", "generate", SLOW.dataset, "--episodes", "40"]
    return [*command, "--episode-steps", "201", "--workers", "2", "--quiet", "--cache-dir", str(cache)]


def _default_ctrl_c() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and an ignored signal stays
    # ignored across exec: the build must see Ctrl-C as a terminal delivers it, however the suite was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_build(cache: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.Popen(
        _generate_command(cache), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_ctrl_c,
    )  # fmt: skip


def _wait_for_progress(cache: Path, build: subprocess.Popen) -> list[psutil.Process]:
    """Wait until the workers have finished at least one episode; return them."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if list((cache / "ogbench").glob(".tmp-*/shard-*.progress")):
            return psutil.Process(build.pid).children()
        assert build.poll() is None, build.communicate()
        time.sleep(0.1)
    raise AssertionError("the build made no progress within 120 s")


def _visible_entries(cache: Path) -> list[str]:
    """What is in the cache besides the (empty, harmless) lock files."""
    return sorted(p.name for p in (cache / "ogbench").iterdir() if not p.name.startswith(".lock-"))


def _keep_existing(cache: Path, smoke_dir: Path) -> tuple[Path, str]:
    kept = cache / "ogbench" / smoke_dir.name
    shutil.copytree(smoke_dir, kept)
    return kept, sha256(kept / TRAIN_FILE)


def test_kill_9_mid_build_leaves_no_dataset_and_the_next_build_recovers(
    tmp_path: Path, isolated_home: Path, smoke_dir: Path
) -> None:
    cache = tmp_path / "cache"
    kept, digest = _keep_existing(cache, smoke_dir)
    build = _start_build(cache, isolated_home)
    workers = _wait_for_progress(cache, build)
    build.send_signal(signal.SIGKILL)
    build.wait()
    _, alive = psutil.wait_procs(workers, timeout=60)  # orphaned workers notice and stop
    assert not alive

    assert find_generated(SLOW, cache) is None
    assert [f.train.parent for f in list_generated(cache)] == [kept]
    assert sha256(kept / TRAIN_FILE) == digest
    assert list((cache / "ogbench").glob(".tmp-*")), "the killed build's scratch directory stays hidden"

    rebuilt = subprocess.run(
        _generate_command(cache),
        env={**os.environ, "HOME": str(isolated_home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not list((cache / "ogbench").glob(".tmp-*")), "stale scratch directories are cleaned up"
    task = load_task("cube-single-play-singletask-v0", cache_dir=cache, episodes=40, episode_steps=201)
    assert len(task.train["rewards"]) == 40 * 200
    task.env.close()


def test_ctrl_c_mid_build_exits_cleanly_and_removes_its_scratch(
    tmp_path: Path, isolated_home: Path, smoke_dir: Path
) -> None:
    cache = tmp_path / "cache"
    kept, digest = _keep_existing(cache, smoke_dir)
    build = _start_build(cache, isolated_home)
    workers = _wait_for_progress(cache, build)
    build.send_signal(signal.SIGINT)
    _, stderr = build.communicate(timeout=60)
    assert build.returncode == 130
    assert "interrupted; nothing partial was kept" in stderr and "Traceback" not in stderr
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert _visible_entries(cache) == [kept.name]
    assert sha256(kept / TRAIN_FILE) == digest


def test_a_build_that_fails_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowsteer.datasets import build as build_module

    real_layout = build_module.row_layout

    def too_narrow_qpos(spec, env):  # the env's qpos no longer fits: writing the first row fails for real
        layout = real_layout(spec, env)
        return {**layout, "qpos": ((1,), layout["qpos"][1])}

    monkeypatch.setattr(build_module, "row_layout", too_narrow_qpos)
    with pytest.raises(ValueError, match="broadcast"):
        build_module.build_dataset(GenerationSpec("scene-play-v0", episodes=2, episode_steps=31), tmp_path)
    assert _visible_entries(tmp_path) == []


def test_two_processes_building_the_same_dataset_generate_it_once(tmp_path: Path, isolated_home: Path) -> None:
    cache = tmp_path / "cache"
    builds = [_start_build(cache, isolated_home) for _ in range(2)]
    outputs = [build.communicate(timeout=600) for build in builds]
    assert [build.returncode for build in builds] == [0, 0], outputs
    # Whether the second one waited for the lock or started after the first had finished depends on timing;
    # either way one copy exists (a second build could not have renamed its copy onto the first), complete.
    assert sum("waiting for another process" in stderr for _, stderr in outputs) <= 1
    assert _visible_entries(cache) == [SLOW.cache_key]
    (copy,) = list_generated(cache)
    assert sha256(copy.train) == copy.provenance["files"]["train"]["sha256"]
    assert sha256(copy.val) == copy.provenance["files"]["val"]["sha256"]
