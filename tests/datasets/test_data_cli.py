"""`flowsteer data generate|list|info` as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# `flowsteer data` subprocesses and dataset builds; in one xdist worker, so the module's copy is generated once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("data-cli")]


def flowsteer(*args: str, home: Path, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home)}
    if cache is not None:
        env["FLOWSTEER_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "flowsteer", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    home, cache = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cache")
    result = flowsteer(
        "data", "generate", "puzzle-3x3-play", "--episodes", "3", "--episode-steps", "101", "--seed", "7",
        "--workers", "2", home=home, cache=cache,
    )  # fmt: skip
    return home, cache, result


def test_generate_reports_what_it_wrote(generated) -> None:
    _, cache, result = generated
    assert result.returncode == 0, result.stderr
    assert "puzzle-3x3-play-v0: 3 + 1 validation episodes, 300 training transitions" in result.stdout
    assert str(cache / "ogbench" / "puzzle-3x3-play__generated-n3-s7-t101") in result.stdout
    assert "env steps/s, 2 worker(s)" in result.stdout


def test_generate_twice_reuses_the_copy(generated) -> None:
    home, cache, _ = generated
    again = flowsteer(
        "data", "generate", "puzzle-3x3-play-v0", "--episodes", "3", "--episode-steps", "101", "--seed", "7",
        home=home, cache=cache,
    )  # fmt: skip
    assert again.returncode == 0 and "already generated" in again.stdout


def test_list_shows_generated_copies_and_with_all_every_dataset(generated) -> None:
    home, cache, _ = generated
    listing = flowsteer("data", "list", home=home, cache=cache)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("puzzle-3x3-play-v0"))
    assert "generated" in row and "3 (300 tr.)" in row and " 7 " in row
    everything = flowsteer("data", "list", "--all", home=home, cache=cache).stdout
    assert "antmaze-giant-navigate-v0" in everything and "needs the official files" in everything
    assert "scene-noisy-v0" in everything


def test_info_prints_facts_copies_and_statistics(generated) -> None:
    home, cache, _ = generated
    info = flowsteer(
        "data", "info", "puzzle-3x3-play-singletask-task1-v0", "--episodes", "3", "--episode-steps", "101",
        "--seed", "7", "--stats", home=home, cache=cache,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    out = info.stdout
    assert "task1, task2, task3, task4 (default), task5" in out
    assert "observation / action dims    55 / 5" in out
    assert "episode limit (single-task)  500 steps" in out
    assert "generated  episodes=3 seed=7 steps/episode=101" in out
    assert re.search(r"train\s+300 transitions", out) and re.search(r"val\s+100 transitions", out)


def test_info_on_locomotion_explains_how_to_get_the_files(tmp_path: Path) -> None:
    result = flowsteer("data", "info", "humanoidmaze-large-navigate-v0", home=tmp_path)
    assert result.returncode == 0
    assert "none. The official files of humanoidmaze-large-navigate-v0 are not on this machine" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "cube-singel-play"], "Did you mean: cube-single-play"),
        (["data", "generate", "antsoccer-arena-navigate-v0"], "only the OGBench dataset server has"),
        (["data", "generate", "cube-single-play-v0", "--episodes", "0"], "--episodes must be an integer >= 1"),
        (["data", "generate", "cube-single-play-v0", "--workers", "0"], "--workers must be an integer >= 1"),
        (["data", "info", "scene-play-v0", "--stats"], "flowsteer data generate scene-play-v0"),
    ],
)
def test_bad_input_prints_one_clear_error_and_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = flowsteer(*args, home=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("flowsteer: error:")


def test_an_empty_machine_says_how_to_start(tmp_path: Path) -> None:
    result = flowsteer("data", "list", home=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0 and "flowsteer data generate cube-single-play-v0" in result.stdout


def test_named_sizes_are_accepted_and_unknown_ones_explained(tmp_path: Path) -> None:
    result = flowsteer("data", "info", "cube-double-play", "--episodes", "smoke", home=tmp_path, cache=tmp_path)
    assert result.returncode == 0
    result = flowsteer("data", "generate", "cube-double-play", "--episodes", "huge", home=tmp_path, cache=tmp_path)
    assert result.returncode == 2
    assert "expected a number of episodes or one of smoke, small, official, got 'huge'" in result.stderr


def test_list_and_info_show_official_files_without_hashing_them(tmp_path: Path, smoke_dir: Path) -> None:
    import shutil

    official = tmp_path / ".ogbench" / "data"
    official.mkdir(parents=True)
    shutil.copy(smoke_dir / "train.npz", official / "cube-single-play-v0.npz")
    shutil.copy(smoke_dir / "train-val.npz", official / "cube-single-play-v0-val.npz")
    listing = flowsteer("data", "list", home=tmp_path, cache=tmp_path / "cache")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("cube-single-play-v0"))
    assert "official" in row and str(official) in row
    info = flowsteer("data", "info", "cube-single-play-v0", home=tmp_path, cache=tmp_path / "cache")
    assert f"official   {official}" in info.stdout
