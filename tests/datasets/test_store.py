"""Which copy of a dataset is used, and the clear errors for everything that can be wrong with one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowsteer.datasets import load_task, make_env, resolve
from flowsteer.datasets.build import TRAIN_FILE, VAL_FILE, build_dataset
from flowsteer.datasets.errors import (
    CorruptDatasetError,
    DatasetError,
    MissingOfficialDataError,
    NotWritableError,
    UnknownNameError,
)
from flowsteer.datasets.generate import GenerationSpec
from flowsteer.datasets.npzfile import sha256, write_npz

CUBE = "cube-single-play-v0"
CUBE_TASK = "cube-single-play-singletask-task2-v0"
SMALL = {"episodes": 4, "episode_steps": 201}  # the session's smoke dataset


def _place_official(source: Path, directory: Path, name: str = CUBE) -> tuple[Path, Path]:
    """Copy a generated pair under official names, as a user would after downloading."""
    directory.mkdir(parents=True, exist_ok=True)
    train, val = directory / f"{name}.npz", directory / f"{name}-val.npz"
    shutil.copy(source / TRAIN_FILE, train)
    shutil.copy(source / VAL_FILE, val)
    return train, val


def test_configured_directory_beats_ogbench_default_beats_the_cache(
    tmp_path: Path, isolated_home: Path, smoke_cache: Path, smoke_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve(CUBE, cache_dir=smoke_cache, **SMALL).source == "generated"

    default_train, _ = _place_official(smoke_dir, isolated_home / ".ogbench" / "data")
    found = resolve(CUBE, cache_dir=smoke_cache, **SMALL)
    assert found.source == "official" and found.train == default_train

    configured = tmp_path / "configured"
    configured_train, _ = _place_official(smoke_dir, configured)
    assert resolve(CUBE, data_dir=configured).train == configured_train
    monkeypatch.setenv("FLOWSTEER_OGBENCH_DIR", str(configured))
    found = resolve(CUBE)
    assert found.train == configured_train
    assert found.provenance["files"]["train"]["sha256"] == sha256(smoke_dir / TRAIN_FILE)

    assert resolve(CUBE, cache_dir=smoke_cache, source="generated", **SMALL).source == "generated"


def test_official_files_load_through_ogbench_with_provenance(tmp_path: Path, smoke_dir: Path) -> None:
    _place_official(smoke_dir, tmp_path / "official")
    task = load_task(CUBE_TASK, data_dir=tmp_path / "official")
    assert task.provenance["source"] == "official"
    assert task.provenance["directory"] == str(tmp_path / "official")
    assert len(task.train["rewards"]) == 4 * 200
    task.env.close()


def test_generation_on_demand_fills_the_cache_once(tmp_path: Path) -> None:
    first = resolve("pointmaze-medium-navigate-v0", cache_dir=tmp_path, episodes=2, episode_steps=51, progress=False)
    assert first.source == "generated"
    stamp = first.train.stat().st_mtime_ns
    again = resolve("pointmaze-medium-navigate-v0", cache_dir=tmp_path, episodes=2, episode_steps=51)
    assert again.train == first.train and again.train.stat().st_mtime_ns == stamp


def test_the_cache_directory_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSTEER_CACHE_DIR", str(tmp_path / "from-env"))
    found = resolve("pointmaze-large-navigate-v0", episodes=1, episode_steps=21, progress=False)
    assert found.train.is_relative_to(tmp_path / "from-env")


def test_generation_off_names_the_command_that_generates(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="flowsteer data generate scene-play-v0 --episodes 3 --seed 1"):
        resolve("scene-play-v0", cache_dir=tmp_path, episodes=3, seed=1, generate=False)


def test_locomotion_without_official_files_says_where_they_come_from(tmp_path: Path) -> None:
    with pytest.raises(MissingOfficialDataError) as error:
        load_task("antmaze-large-navigate-singletask-v0", cache_dir=tmp_path)
    message = str(error.value)
    assert "rail.eecs.berkeley.edu/datasets/ogbench/antmaze-large-navigate-v0.npz" in message
    assert "~/.ogbench/data" in message and "FLOWSTEER_OGBENCH_DIR" in message
    assert not (tmp_path / "ogbench").exists() or not any((tmp_path / "ogbench").iterdir())


@pytest.mark.parametrize(
    "name",
    [
        "antmaze-giant-navigate-singletask-task3-v0",
        "humanoidmaze-medium-navigate-singletask-v0",
        "antsoccer-arena-navigate-singletask-v0",
    ],
)
def test_locomotion_environments_work_without_their_datasets(name: str) -> None:
    env = make_env(name)
    ob, _ = env.reset(seed=0)
    ob, reward, _terminated, _truncated, info = env.step(env.action_space.sample())
    assert ob.shape == env.observation_space.shape and reward in (-1.0, 0.0) and "success" in info
    env.close()


def test_asking_for_official_files_of_a_generatable_dataset_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(MissingOfficialDataError, match=r"cube-single-play-v0\.npz"):
        resolve(CUBE, data_dir=tmp_path, source="official")


def test_unknown_names_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean"):
        load_task("cube-single-play-singletask-task2-v1", cache_dir=tmp_path)
    with pytest.raises(UnknownNameError):
        resolve("cube-sextuple-play-v0", cache_dir=tmp_path)
    assert not (tmp_path / "ogbench").exists()


@pytest.mark.parametrize(("field", "value"), [("episodes", 0), ("seed", -1), ("episode_steps", 1), ("episodes", 2.5)])
def test_bad_sizes_and_seeds_are_rejected(field: str, value: object) -> None:
    with pytest.raises(DatasetError, match=f"--{field.replace('_', '-')} must be an integer"):
        GenerationSpec(CUBE, **{field: value})


def test_a_truncated_file_is_reported_and_nothing_else_is_touched(tmp_path: Path, smoke_dir: Path) -> None:
    train, val = _place_official(smoke_dir, tmp_path / "official")
    val_digest = sha256(val)
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    with pytest.raises(CorruptDatasetError, match="truncated or corrupted") as error:
        load_task(CUBE_TASK, data_dir=tmp_path / "official")
    assert str(train) in str(error.value)
    assert sha256(val) == val_digest and sha256(smoke_dir / TRAIN_FILE) != sha256(train)


def test_corrupted_bytes_inside_an_array_are_reported(tmp_path: Path, smoke_dir: Path) -> None:
    train, _ = _place_official(smoke_dir, tmp_path / "official")
    data = bytearray(train.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # headers intact, compressed payload damaged
    train.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="truncated or corrupted"):
        load_task(CUBE_TASK, data_dir=tmp_path / "official")


def test_a_file_with_missing_keys_is_rejected_with_their_names(tmp_path: Path, smoke_dir: Path) -> None:
    train, _ = _place_official(smoke_dir, tmp_path / "official")
    with np.load(train) as raw:
        arrays = {k: raw[k] for k in raw.files if k != "qpos"}
    write_npz(train, arrays)
    with pytest.raises(CorruptDatasetError, match=r"lacks the keys \['qpos'\]"):
        resolve(CUBE, data_dir=tmp_path / "official")


def test_a_file_with_wrong_shapes_is_rejected(tmp_path: Path, smoke_dir: Path) -> None:
    train, _ = _place_official(smoke_dir, tmp_path / "official")
    with np.load(train) as raw:
        arrays = {k: raw[k] for k in raw.files}
    arrays["observations"] = arrays["observations"][:, :20]
    write_npz(train, arrays)
    with pytest.raises(CorruptDatasetError, match=r"'observations' has shape \(804, 20\), expected \(804, 28\)"):
        resolve(CUBE, data_dir=tmp_path / "official")


def test_a_scene_file_without_button_states_is_rejected(tmp_path: Path, smoke_dir: Path) -> None:
    _place_official(smoke_dir, tmp_path / "official", name="scene-play-v0")
    with pytest.raises(CorruptDatasetError, match="button_states"):
        resolve("scene-play-v0", data_dir=tmp_path / "official")


def test_half_an_official_pair_is_reported(tmp_path: Path, smoke_dir: Path) -> None:
    _, val = _place_official(smoke_dir, tmp_path / "official")
    val.unlink()
    with pytest.raises(CorruptDatasetError, match=r"cube-single-play-v0-val\.npz does not"):
        resolve(CUBE, data_dir=tmp_path / "official")


def test_a_cache_that_cannot_be_written_fails_clearly_and_loses_nothing(tmp_path: Path, smoke_cache: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(NotWritableError, match="--cache-dir"):
        resolve("pointmaze-medium-navigate-v0", cache_dir=blocker / "cache", episodes=1, episode_steps=21)
    assert blocker.read_text() == "not a directory"
    if os.geteuid() != 0:  # root writes anywhere, so only an ordinary user can see a read-only directory
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        with pytest.raises(NotWritableError):
            build_dataset(GenerationSpec(CUBE, episodes=1, episode_steps=21), readonly)


def test_a_cached_copy_with_damaged_provenance_is_not_trusted(tmp_path: Path, smoke_dir: Path) -> None:
    spec = GenerationSpec(CUBE, **SMALL)
    copy = tmp_path / "ogbench" / spec.cache_key
    shutil.copytree(smoke_dir, copy)
    (copy / "provenance.json").write_text("{ not json")
    rebuild = r"Rebuild it: flowsteer data generate .* --episode-steps 201 --force"
    with pytest.raises(CorruptDatasetError, match=rebuild):
        resolve(CUBE, cache_dir=tmp_path, **SMALL)
