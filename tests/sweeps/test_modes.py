"""The papers' protocol (tune on the default task, then broadcast the best setting) and Optuna search."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flowsteer.reports.aggregate import score_run
from flowsteer.sweeps.cluster import local_temp_dir
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.modes import SweepIncomplete, TuneThenBroadcastMode
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.trials import Trial, grid_trials, tuning_tasks

from .conftest import TINY

pytestmark = pytest.mark.integration  # real sweeps on a private Ray cluster

LRS = [1e-4, 3e-4]


def _write_finished_run(trial: Trial, success: list[float], state: str = "finished") -> None:
    """The files a finished run leaves, with chosen evaluation results at steps 20, 40, 60."""
    path = trial.spec.run_dir
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"run": trial.spec.to_dict(), "run_id": trial.id}))
    (path / "protocol.json").write_text(json.dumps({"setting": "offline", "evaluation": {"steps": [20, 40, 60]}}))
    rows = "".join(f"{step},{value}\n" for step, value in zip([20, 40, 60], success, strict=True))
    (path / "eval.csv").write_text("step,success\n" + rows)
    (path / "status.json").write_text(json.dumps({"state": state, "step": 60}))


@pytest.mark.parametrize(
    ("runs", "chosen"),
    [
        # lr -> per seed: success at the last three evaluations; scores 25 vs 30
        ({1e-4: [[0.1, 0.2, 0.3], [0.3, 0.3, 0.3]], 3e-4: [[0.5, 0.5, 0.2], [0.2, 0.2, 0.2]]}, 3e-4),
        # 25 vs 25: a tie goes to the earlier grid point
        ({1e-4: [[0.1, 0.2, 0.3], [0.3, 0.3, 0.3]], 3e-4: [[0.5, 0.5, 0.2], [0.0, 0.1, 0.2]]}, 1e-4),
    ],
)
def test_the_setting_with_the_best_mean_over_seeds_on_the_default_task_is_chosen(write_sweep, runs, chosen):
    spec = load_sweep(write_sweep(mode="tune-then-broadcast", algorithms={"bc": {"grid": {"lr": LRS}}},
                                  tasks=["cube-single-play"], seeds=2))  # fmt: skip
    tuned = grid_trials(spec, "tune", tuning_tasks(spec))
    for trial in tuned:
        _write_finished_run(trial, runs[trial.spec.hyperparameters["lr"]][trial.spec.seed])
    mode = TuneThenBroadcastMode(spec)
    assert mode.choose(tuned) == {("bc", "cube-single-play-v0"): {"lr": chosen}}
    expected = 100 * sum(sum(seed) / 3 for seed in runs[chosen]) / 2
    record = mode.selection["bc on cube-single-play-v0"]
    assert record["score"] == pytest.approx(expected)
    assert record["runs"] == [t.id for t in tuned if t.spec.hyperparameters["lr"] == chosen]


def test_a_setting_with_an_unfinished_seed_does_not_compete(write_sweep):
    spec = load_sweep(write_sweep(mode="tune-then-broadcast", algorithms={"bc": {"grid": {"lr": LRS}}},
                                  tasks=["cube-single-play"], seeds=2))  # fmt: skip
    tuned = grid_trials(spec, "tune", tuning_tasks(spec))
    for trial in tuned:
        better = trial.spec.hyperparameters["lr"] == 3e-4
        state = "failed" if better and trial.spec.seed == 1 else "finished"
        _write_finished_run(trial, [0.9] * 3 if better else [0.1] * 3, state)
    assert TuneThenBroadcastMode(spec).choose(tuned) == {("bc", "cube-single-play-v0"): {"lr": 1e-4}}
    for trial in tuned:
        (trial.spec.run_dir / "status.json").write_text(json.dumps({"state": "failed"}))
    with pytest.raises(SweepIncomplete, match="nothing to broadcast"):
        TuneThenBroadcastMode(spec).choose(tuned)


def test_tune_then_broadcast_runs_the_chosen_setting_on_the_other_tasks(write_sweep, reaper):
    path = write_sweep(
        "broadcast",
        mode="tune-then-broadcast",
        algorithms={"bc": {"hyperparameters": TINY["bc"], "grid": {"lr": [3e-4, 3e-3]}}},
        tasks=["cube-single-play:1,2"],
    )
    spec = load_sweep(path)
    reaper.append(local_temp_dir(spec.directory))
    outcome = run_sweep(spec, write=lambda line: None)
    assert outcome.counts == {"finished": 3}

    tuned = [t for t in outcome.trials if t.stage == "tune"]
    assert {t.spec.task for t in tuned} == {"cube-single-play-singletask-task2-v0"}  # the default task
    scores = {t.spec.hyperparameters["lr"]: score_run(t.spec.run_dir) for t in tuned}
    best_lr = max(scores, key=lambda lr: (scores[lr], -[3e-4, 3e-3].index(lr)))
    selection = json.loads((spec.directory / "selection.json").read_text())
    assert selection["bc on cube-single-play-v0"]["hyperparameters"]["lr"] == best_lr

    [broadcast] = [t for t in outcome.trials if t.stage == "broadcast"]
    assert broadcast.spec.task == "cube-single-play-singletask-task1-v0"
    assert broadcast.spec.hyperparameters["lr"] == best_lr
    final = pd.read_csv(spec.directory / "report" / "report-task.csv")
    assert set(final["row"]) == {"cube-single-play-singletask-task1-v0", "cube-single-play-singletask-task2-v0"}
    assert set(final["method"]) == {"bc"}  # only the chosen setting
    tuning = pd.read_csv(spec.directory / "report" / "tuning" / "report-task.csv")
    assert len(set(tuning["method"])) == 2  # every tried setting, beside it


def test_optuna_search_runs_every_seed_of_each_suggestion(write_sweep, reaper):
    path = write_sweep(
        "optuna",
        mode="optuna",
        algorithms={"bc": {"hyperparameters": TINY["bc"], "search": {"lr": {"loguniform": [1e-4, 1e-2]}}}},
        seeds=2,
        optuna={"suggestions": 2, "seed": 3},
    )
    spec = load_sweep(path)
    reaper.append(local_temp_dir(spec.directory))
    outcome = run_sweep(spec, write=lambda line: None)
    assert outcome.counts == {"finished": 4}
    by_lr: dict[float, set[int]] = {}
    for trial in outcome.trials:
        by_lr.setdefault(trial.spec.hyperparameters["lr"], set()).add(trial.spec.seed)
        assert 1e-4 <= trial.spec.hyperparameters["lr"] <= 1e-2
    assert len(by_lr) == 2 and all(seeds == {0, 1} for seeds in by_lr.values())
    assert Path(spec.directory / "tune" / "optuna-bc-cube-single-play-task2" / "done.json").exists()
    final = pd.read_csv(spec.directory / "report" / "report-task.csv")
    assert len(final) == 1 and final["n_seeds"].iat[0] == 2  # the best suggestion, both seeds
