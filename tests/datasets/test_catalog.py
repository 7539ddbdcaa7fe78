"""The catalog's facts match OGBench's real environments, and names resolve (or fail) helpfully."""

from __future__ import annotations

import csv
from importlib.resources import files

import pytest

from flowsteer.datasets import catalog, make_env
from flowsteer.datasets.errors import UnknownNameError


@pytest.mark.parametrize("family", list(catalog.FAMILIES.values()), ids=lambda f: f.name)
def test_family_facts_match_the_real_environment(family: catalog.EnvFamily) -> None:
    dataset = next(d for d in catalog.DATASETS.values() if d.family is family)
    env = make_env(dataset.task_name(family.default_task))
    try:
        assert env.observation_space.shape == (family.obs_dim,)
        assert env.action_space.shape == (family.act_dim,)
        assert env.spec.max_episode_steps == family.episode_steps
        assert env.unwrapped.num_tasks == catalog.NUM_TASKS
        assert env.unwrapped._reward_task_id == family.default_task
    finally:
        env.close()


def test_the_fql_paper_datasets_are_the_rows_of_its_state_based_table_in_order() -> None:
    # The published table (flowsteer/reports/data/published.csv) transcribes the paper's Table 2.
    with files("flowsteer.reports").joinpath("data/published.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if "Table 2" in r["source"] and r["benchmark"] == "ogbench"]
    table_order = list(dict.fromkeys(r["dataset"] for r in rows))
    assert [d.category for d in catalog.datasets_in_fql_paper()] == table_order


def test_default_tasks_follow_the_papers() -> None:
    defaults = {d.category: d.family.default_task for d in catalog.datasets_in_fql_paper()}
    assert defaults["antsoccer-arena-navigate"] == 4
    assert defaults["puzzle-3x3-play"] == defaults["puzzle-4x4-play"] == 4
    assert defaults["cube-single-play"] == defaults["cube-double-play"] == defaults["scene-play"] == 2
    assert defaults["antmaze-large-navigate"] == defaults["humanoidmaze-large-navigate"] == 1


def test_locomotion_is_official_only_and_manipulation_and_pointmaze_are_generatable() -> None:
    for dataset in catalog.DATASETS.values():
        expected = not dataset.family.name.startswith(("antmaze", "humanoidmaze", "antsoccer"))
        assert dataset.generatable is expected, dataset.name


def test_a_name_without_task_number_means_the_default_task() -> None:
    ref = catalog.parse_task("puzzle-3x3-play-singletask-v0")
    assert ref.task_id == 4 and ref.is_default_task
    assert ref.name == "puzzle-3x3-play-singletask-task4-v0"
    assert ref.env_name == "puzzle-3x3-singletask-task4-v0"
    assert ref.dataset.name == "puzzle-3x3-play-v0"


def test_every_dataset_has_five_tasks_with_canonical_names() -> None:
    scene = catalog.get_dataset("scene-play")
    assert scene.task_names == [f"scene-play-singletask-task{k}-v0" for k in range(1, 6)]
    assert catalog.get_dataset("scene-play-singletask-task3-v0") is scene
    assert catalog.get_dataset("scene-play-v0") is scene
    assert len(catalog.all_task_names()) == 5 * len(catalog.DATASETS)


def test_official_sizes() -> None:
    assert catalog.get_dataset("cube-single-play-v0").official_transitions == 1_000_000
    assert catalog.get_dataset("antmaze-giant-navigate-v0").official_transitions == 500 * 2000
    assert catalog.get_dataset("humanoidmaze-medium-navigate-v0").official_transitions == 2_000_000


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("cube-singel-play-singletask-task2-v0", "cube-single-play-singletask-task2-v0"),
        ("scene-play-singletask-task2", "scene-play-singletask-task2-v0"),
        ("puzle-4x4-play-v0", "puzzle-4x4-play-v0"),
    ],
)
def test_unknown_names_suggest_the_closest_valid_ones(name: str, suggestion: str) -> None:
    parse = catalog.parse_task if "singletask" in name else catalog.get_dataset
    with pytest.raises(UnknownNameError, match="Did you mean") as error:
        parse(name)
    assert suggestion in str(error.value)


def test_a_task_number_outside_one_to_five_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"tasks 1\.\.5") as error:
        catalog.parse_task("cube-double-play-singletask-task7-v0")
    assert "cube-double-play-singletask-task5-v0" in str(error.value)
