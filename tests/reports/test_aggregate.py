"""Golden tests: every expected number is computed by hand from the values written into the run directories."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flowsteer.reports.aggregate import Aggregation, category_cells, run_scores, score_run, task_cells
from flowsteer.reports.load import ReportError, ReportWarning, load_runs

CUBE = "cube-single-play-singletask-task{}-v0"  # default task: task2
STEPS = (100, 200, 300, 400, 500)


def _cell(cells: pd.DataFrame, method: str, row: str, phase: str = "offline") -> pd.Series:
    match = cells[(cells["method"] == method) & (cells["row"] == row) & (cells["phase"] == phase)]
    assert len(match) == 1, match
    return match.iloc[0]


def test_a_run_scores_the_mean_of_its_last_three_evaluations_in_percent(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, dict(zip(STEPS, [0.1, 0.2, 0.4, 0.5, 0.9], strict=True)))
    scores = run_scores(load_runs(tmp_path / "runs"))
    assert scores["score"].iat[0] == pytest.approx((0.4 + 0.5 + 0.9) / 3 * 100)  # 60
    assert scores["window"].iat[0] == "[300, 400, 500]"


def test_last_k_is_a_parameter_k1_is_the_last_evaluation(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, dict(zip(STEPS, [0.1, 0.2, 0.4, 0.5, 0.9], strict=True)))
    scores = run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1))
    assert scores["score"].iat[0] == pytest.approx(90.0)


def test_rows_repeated_by_a_resumed_run_count_once_keeping_the_last(write_run, tmp_path):
    write_run(
        "fql", CUBE.format(1), 0, dict(zip(STEPS, [0.1, 0.2, 0.4, 0.5, 0.9], strict=True)), extra_rows=[(400, 0.8)]
    )
    tidy = load_runs(tmp_path / "runs")
    assert len(tidy[(tidy["metric"] == "success") & (tidy["step"] == 400)]) == 1
    assert run_scores(tidy)["score"].iat[0] == pytest.approx((0.4 + 0.8 + 0.9) / 3 * 100)  # 70


def test_a_task_cell_is_mean_and_population_std_over_seeds(write_run, tmp_path):
    for seed, last in enumerate([0.6, 0.8, 1.0]):
        write_run("fql", CUBE.format(2), seed, {100: 0.0, 200: last})
    cells = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    cell = _cell(cells, "fql", CUBE.format(2))
    assert cell["mean"] == pytest.approx(80.0)
    assert cell["std"] == pytest.approx(math.sqrt((20**2 + 0 + 20**2) / 3))  # ddof = 0
    assert cell["ddof"] == 0 and cell["n_seeds"] == 3 and cell["seeds"] == "0 1 2"
    assert cell["default_task"]  # cube's default task is task2
    assert cell["flags"] == ""


def test_a_category_averages_each_seeds_five_tasks_first(write_run, tmp_path):
    # seed 0: 10..50 (mean 30); seed 1: 50..10 (mean 30). Per-seed means agree, so the category std is 0
    # although every task's std is 20: the mean of task stds would be the wrong rule.
    for seed, values in enumerate([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]]):
        for task, value in enumerate(values, start=1):
            write_run("fql", CUBE.format(task), seed, {100: value})
    scores = run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1))
    cell = _cell(category_cells(scores), "fql", "cube-single-play")
    assert cell["mean"] == pytest.approx(30.0)
    assert cell["std"] == pytest.approx(0.0)
    assert cell["n_seeds"] == 2 and cell["flags"] == ""
    assert _cell(task_cells(scores), "fql", CUBE.format(1))["std"] == pytest.approx(20.0)


def test_a_seed_missing_a_task_is_left_out_of_the_category_and_flagged(write_run, tmp_path):
    for task in range(1, 6):
        write_run("fql", CUBE.format(task), 0, {100: 0.2})
    for task in range(1, 5):  # seed 1 has no task5
        write_run("fql", CUBE.format(task), 1, {100: 0.8})
    scores = run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1))
    cell = _cell(category_cells(scores), "fql", "cube-single-play")
    assert cell["mean"] == pytest.approx(20.0)  # seed 0 only, not (20 + 80) / 2
    assert cell["n_seeds"] == 1
    assert cell["flags"] == "seed 1 lacks task5 (left out)"
    task5 = _cell(task_cells(scores), "fql", CUBE.format(5))
    assert task5["flags"] == "missing seeds 1" and task5["n_seeds"] == 1


def test_missing_seeds_are_flagged_against_the_seeds_other_cells_have(write_run, tmp_path):
    for seed in range(3):
        write_run("fql", CUBE.format(1), seed, {100: 0.5})
    for seed in range(2):
        write_run("iql", CUBE.format(1), seed, {100: 0.5})
    cells = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert _cell(cells, "fql", CUBE.format(1))["flags"] == ""
    assert _cell(cells, "iql", CUBE.format(1))["flags"] == "missing seeds 2"


def test_a_run_without_its_window_is_flagged_not_averaged(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.1, 200: 0.2, 300: 0.3})
    run = write_run("fql", CUBE.format(1), 1, {100: 0.9, 200: 0.9, 300: 0.9})
    (run / "eval.csv").write_text((run / "eval.csv").read_text().rsplit("\n", 2)[0] + "\n")  # lose step 300
    cell = _cell(task_cells(run_scores(load_runs(tmp_path / "runs"))), "fql", CUBE.format(1))
    assert cell["mean"] == pytest.approx(20.0) and cell["n_seeds"] == 1
    assert "no evaluation at step(s) 300" in cell["flags"]


@pytest.mark.parametrize(
    ("means", "bold"),
    [
        ([1.0, 0.95, 0.949], [True, True, False]),  # at 95% is bold, below is not
        ([0.5, 0.5, 0.1], [True, True, False]),  # ties with the best are all bold
        ([0.0, 0.0, 0.0], [True, True, True]),  # all-zero row: 0 >= 0.95 x 0 bolds every cell
        ([0.8, 0.76, 0.0], [True, True, False]),  # exactly 95% of 80 is 76
    ],
)
def test_bold_at_or_above_95_percent_of_the_rows_best(write_run, tmp_path, means, bold):
    for algo, value in zip(["fql", "iql", "bc"], means, strict=True):
        write_run(algo, CUBE.format(1), 0, {100: value})
    cells = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert [bool(_cell(cells, a, CUBE.format(1))["bold"]) for a in ["fql", "iql", "bc"]] == bold


def test_an_offline_to_online_cell_holds_the_end_of_offline_and_the_final_value(write_run, tmp_path):
    for seed, (at_300, at_500) in enumerate([(0.2, 0.6), (0.4, 1.0)]):
        values = {100: 0.0, 200: 0.0, 300: at_300, 400: 0.0, 500: at_500}
        write_run("fql", CUBE.format(2), seed, values, offline_steps=300, online_steps=200)
    cells = task_cells(run_scores(load_runs(tmp_path / "runs")))
    offline, online = _cell(cells, "fql", CUBE.format(2), "offline"), _cell(cells, "fql", CUBE.format(2), "online")
    assert (offline["mean"], offline["std"]) == (pytest.approx(30.0), pytest.approx(10.0))
    assert (online["mean"], online["std"]) == (pytest.approx(80.0), pytest.approx(20.0))
    assert offline["setting"] == "offline-to-online"


def test_an_online_only_run_has_its_final_value_and_no_offline_one(write_run, tmp_path):
    # RLPD trains online only (offline_steps 0): nothing was trained offline, so there is nothing to score there.
    write_run("rlpd", CUBE.format(2), 0, {100: 0.2, 200: 0.6}, offline_steps=0, online_steps=200)
    scores = run_scores(load_runs(tmp_path / "runs"))
    assert scores["phase"].tolist() == ["online"]
    assert scores["incomplete"].tolist() == [""]
    assert _cell(task_cells(scores), "rlpd", CUBE.format(2), "online")["mean"] == pytest.approx(60.0)


def test_runs_of_different_dataset_provenance_are_never_mixed_in_one_cell(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, source="official")
    write_run("fql", CUBE.format(1), 1, {100: 0.5}, source="generated")
    with pytest.raises(ReportError, match="different provenance") as error:
        task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert "fql-cube-single-play-singletask-task1-v0-s0" in str(error.value)
    assert "fql-cube-single-play-singletask-task1-v0-s1" in str(error.value)


def test_runs_of_different_ogbench_versions_are_never_mixed_in_one_cell(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, ogbench="1.1.0")
    write_run("fql", CUBE.format(1), 1, {100: 0.5}, ogbench="1.2.2")
    with pytest.raises(ReportError, match=r"ogbench=1\.1\.0.*ogbench=1\.2\.2"):
        task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))


def test_different_hyperparameters_of_one_algorithm_get_separate_columns(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.2}, hyperparameters={"alpha": 10})
    write_run("fql", CUBE.format(1), 0, {100: 0.6}, hyperparameters={"alpha": 300})
    cells = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert _cell(cells, "fql (alpha=10)", CUBE.format(1))["mean"] == pytest.approx(20.0)
    assert _cell(cells, "fql (alpha=300)", CUBE.format(1))["mean"] == pytest.approx(60.0)


def test_a_run_with_fewer_evaluations_than_k_is_flagged_not_averaged(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.1, 200: 0.2})
    cell = _cell(task_cells(run_scores(load_runs(tmp_path / "runs"))), "fql", CUBE.format(1))
    assert math.isnan(cell["mean"]) and cell["n_seeds"] == 0
    assert "2 evaluation(s) scheduled, fewer than the last 3 averaged" in cell["flags"]


def test_runs_with_different_training_budgets_are_separate_columns_not_one_cell(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {200: 0.2, 400: 0.4, 600: 0.6})
    write_run("fql", CUBE.format(1), 1, {300: 0.3, 600: 0.6, 900: 0.9})
    with pytest.warns(
        ReportWarning, match=r"fql on .*task1-v0: runs differ in eval_interval \[200, 300\]; offline_steps \[600, 900\]"
    ):
        cells = task_cells(run_scores(load_runs(tmp_path / "runs")))
    short = _cell(cells, "fql (eval_interval=200, offline_steps=600)", CUBE.format(1))
    long = _cell(cells, "fql (eval_interval=300, offline_steps=900)", CUBE.format(1))
    assert (short["mean"], short["n_seeds"], long["mean"], long["n_seeds"]) == (
        pytest.approx(40),
        1,
        pytest.approx(60),
        1,
    )
    assert short["flags"] == "missing seeds 1" and long["flags"] == "missing seeds 0"


def test_runs_with_different_evaluation_episodes_are_separate_columns(write_run, tmp_path):
    write_run("bc", CUBE.format(1), 0, {100: 0.5}, episodes_per_eval=10)
    write_run("bc", CUBE.format(1), 1, {100: 0.7}, episodes_per_eval=50)
    with pytest.warns(ReportWarning, match=r"runs differ in eval_episodes \[10, 50\]"):
        cells = task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert set(cells["method"]) == {"bc (eval_episodes=10)", "bc (eval_episodes=50)"}


def test_one_seed_in_two_runs_of_one_column_is_refused(write_run, tmp_path):
    steps = {100: 0.5}
    write_run("fql", CUBE.format(1), 0, steps, name="fql-a", run_fields={"checkpoint_interval": 100})
    write_run("fql", CUBE.format(1), 0, steps, name="fql-b", run_fields={"checkpoint_interval": 200})
    scores = run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1))
    for cells in (task_cells, category_cells):
        with pytest.raises(ReportError, match=r"fql on .*task1-v0 \(offline\) has seed 0 in 2 runs: fql-a, fql-b"):
            cells(scores)


def test_runs_on_different_data_are_refused_as_a_provenance_mix_not_as_duplicate_seeds(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, name="fql-data0", source="generated", episodes=5)
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, name="fql-data1", source="generated", episodes=10)
    with pytest.raises(ReportError, match=r"mixes runs of different provenance(?=.*fql-data0)(?=.*fql-data1)"):
        task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))


def test_runs_of_different_flowsteer_commits_are_never_mixed_in_one_cell(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, git_sha="aaaaaaaaaaaa1111")
    write_run("fql", CUBE.format(1), 1, {100: 0.5}, git_sha="bbbbbbbbbbbb2222")
    with pytest.raises(ReportError, match=r"commit=aaaaaaaaaaaa.*commit=bbbbbbbbbbbb"):
        task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))


def test_runs_of_different_flax_versions_are_never_mixed_in_one_cell(write_run, tmp_path):
    write_run("fql", CUBE.format(1), 0, {100: 0.5}, versions={"flax": "0.12.8"})
    write_run("fql", CUBE.format(1), 1, {100: 0.5}, versions={"flax": "0.13.0"})
    with pytest.raises(ReportError, match=r"flax=0\.12\.8.*flax=0\.13\.0"):
        task_cells(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))


def test_score_run_is_the_runs_report_cell_and_nan_without_its_window(write_run, tmp_path):
    full = write_run("fql", CUBE.format(1), 0, dict(zip(STEPS, [0.1, 0.2, 0.4, 0.5, 0.9], strict=True)))
    cell = _cell(task_cells(run_scores(load_runs(tmp_path / "runs"))), "fql", CUBE.format(1))
    assert score_run(full) == pytest.approx(cell["mean"]) == pytest.approx(60.0)
    short = write_run("fql", CUBE.format(2), 0, {100: 0.9, 200: 1.0}, root=tmp_path / "short")
    assert math.isnan(score_run(short))  # two evaluations cannot fill a window of three: not 0 %, not 95 %
