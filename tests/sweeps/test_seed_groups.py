"""Seed groups (seeds_per_trial): which trials one Ray Tune trial trains together, and what is left to launch."""

from __future__ import annotations

import pytest

from flowsteer.rundir import write_json_atomic
from flowsteer.sweeps.spec import SweepSpecError, load_sweep
from flowsteer.sweeps.trials import Trial, grid_trials, group_trials, groups_to_run, suggestion_group
from flowsteer.sweeps.tune_runner import ERROR_FILE, error_files

OPTUNA_BC = {"bc": {"search": {"lr": {"loguniform": [1e-4, 1e-2]}}}}


def _seeds(groups) -> list[list[int]]:
    return [[t.spec.seed for t in group.trials] for group in groups]


def _finish(trial: Trial, state: str = "finished") -> None:
    trial.spec.run_dir.mkdir(parents=True)
    write_json_atomic(trial.spec.run_dir / "status.json", {"state": state})


def test_the_seeds_of_a_setting_form_groups_of_up_to_k_in_seed_order(write_sweep):
    spec = load_sweep(write_sweep(seeds=5, seeds_per_trial=2))
    assert _seeds(group_trials(spec, grid_trials(spec))) == [[0, 1], [2, 3], [4]]


def test_groups_follow_the_order_of_the_listed_seeds(write_sweep):
    spec = load_sweep(write_sweep(seeds=[4, 0, 2], seeds_per_trial=2))
    assert _seeds(group_trials(spec, grid_trials(spec))) == [[4, 0], [2]]


def test_only_trials_that_differ_in_seed_alone_share_a_group(write_sweep):
    spec = load_sweep(
        write_sweep(
            algorithms={"bc": {"grid": {"lr": [1e-4, 3e-4]}}, "fql": {}},
            tasks=["cube-single-play:1,2"],
            seeds=2,
            seeds_per_trial=8,
        )
    )
    trials = grid_trials(spec)
    groups = group_trials(spec, trials)
    assert len(groups) == 3 * 2 and _seeds(groups) == [[0, 1]] * 6
    for group in groups:
        first = group.trials[0].spec.to_dict() | {"seed": None}
        assert all(t.spec.to_dict() | {"seed": None} == first for t in group.trials)
    assert sorted(t.id for g in groups for t in g.trials) == sorted(t.id for t in trials)  # every trial once


def test_grouping_keeps_every_run_id_and_a_group_of_one_is_named_by_it(write_sweep):
    ungrouped = load_sweep(write_sweep(seeds=3))
    grouped = load_sweep(write_sweep(seeds=3, seeds_per_trial=2))
    assert [t.id for t in grid_trials(grouped)] == [t.id for t in grid_trials(ungrouped)]
    singles = group_trials(ungrouped, grid_trials(ungrouped))
    assert [g.id for g in singles] == [t.id for t in grid_trials(ungrouped)]  # Tune's names as before groups
    pairs = group_trials(grouped, grid_trials(grouped))
    assert [g.id for g in pairs] == [f"{pairs[0].trials[0].id}+1", pairs[1].trials[0].id]


def test_finished_and_diverged_seeds_are_skipped_and_a_group_all_done_is_not_launched(write_sweep):
    spec = load_sweep(write_sweep(seeds=4, seeds_per_trial=2))
    trials = grid_trials(spec)
    _finish(trials[0])
    _finish(trials[1], "diverged")
    _finish(trials[2])
    [group] = groups_to_run(spec, trials)
    assert _seeds([group]) == [[2, 3]]  # the group keeps its seeds, and its name, when one of them is done
    assert [t.spec.seed for t in group.pending()] == [3]


def test_an_optuna_repeat_is_one_seed_group_and_regroups_to_the_same_group(write_sweep):
    spec = load_sweep(write_sweep(mode="optuna", algorithms=OPTUNA_BC, seeds=4, seeds_per_trial=2))
    groups = [suggestion_group(spec, "bc", spec.tasks[0], {"lr": 1e-3}, index) for index in (1, 0)]
    assert _seeds(groups) == [[2, 3], [0, 1]]
    trials = [t for group in groups for t in group.trials]
    assert [g.id for g in group_trials(spec, trials)] == [g.id for g in groups]  # the summary finds their errors


def test_a_failed_groups_error_file_is_each_of_its_seeds(write_sweep):
    spec = load_sweep(write_sweep(seeds=3, seeds_per_trial=2))
    trials = grid_trials(spec)
    pair, _ = group_trials(spec, trials)
    error = spec.directory / "tune" / "grid" / pair.id / ERROR_FILE  # where Tune writes a failed trial's traceback
    error.parent.mkdir(parents=True)
    error.write_text("Failure # 1 (occurred at 2026-01-01_00-00-00)\nRuntimeError: lost\n")
    assert error_files(spec, trials) == {trials[0].id: error, trials[1].id: error}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seeds_per_trial": 0}, "seeds_per_trial must be an integer >= 1, got 0"),
        ({"seeds_per_trial": "all"}, "seeds_per_trial must be an integer >= 1"),
        (
            {"mode": "optuna", "algorithms": OPTUNA_BC, "seeds": 3, "seeds_per_trial": 2},
            "seeds_per_trial 2 does not divide the 3 seeds: mode optuna scores a suggestion by the mean of its seed "
            "groups",
        ),
    ],
)
def test_a_bad_seeds_per_trial_fails_with_a_message_naming_it(write_sweep, fields, message):
    with pytest.raises(SweepSpecError) as caught:
        load_sweep(write_sweep(**fields))
    assert message in str(caught.value)


def test_optuna_accepts_groups_that_divide_its_seeds(write_sweep):
    spec = load_sweep(write_sweep(mode="optuna", algorithms=OPTUNA_BC, seeds=4, seeds_per_trial=2))
    assert spec.seeds_per_trial == 2
