"""IQM, stratified-bootstrap intervals, performance profiles and learning-curve figures."""

from __future__ import annotations

import numpy as np
import pytest

from flowsteer.reports.aggregate import Aggregation, run_scores
from flowsteer.reports.load import load_runs
from flowsteer.reports.plots import curves, plot_learning_curves
from flowsteer.reports.stats import (
    improvement_estimates,
    interval_estimates,
    iqm,
    performance_profiles,
    probability_of_improvement,
    score_matrices,
)

CUBE = "cube-single-play-singletask-task{}-v0"


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(8.0).reshape(4, 2)) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert iqm(np.array([[0.0, 0.0, 0.0, 100.0]])) == pytest.approx(0.0)  # the outlier is trimmed


def test_the_bootstrap_resamples_seeds_within_each_task():
    # Task 1 always 0, task 2 always 100: a stratified resample always has mean 50 (pooling would not).
    matrix = np.array([[0.0, 100.0]] * 4)
    row = interval_estimates({"m": matrix}, reps=500).set_index("statistic").loc["mean"]
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == (50.0, 50.0, 50.0)


def test_intervals_hold_the_estimate_and_repeat_with_the_seed():
    matrix = np.random.default_rng(1).uniform(0, 100, size=(8, 5))
    first = interval_estimates({"m": matrix}, reps=500, seed=3)
    assert first.equals(interval_estimates({"m": matrix}, reps=500, seed=3))
    for _, row in first.iterrows():
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"] and row["ci_low"] < row["ci_high"]
    assert set(first["statistic"]) == {"IQM", "mean"} and set(first["runs"]) == {8} and set(first["tasks"]) == {5}


def test_a_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    profile = performance_profiles({"m": np.array([[10.0, 60.0], [30.0, 80.0]])}, thresholds=[0, 50, 100], reps=100)
    assert list(profile["fraction"]) == [1.0, 0.5, 0.0]


def test_probability_of_improvement_counts_wins_and_half_ties_per_task():
    x = np.array([[10.0, 50.0], [30.0, 50.0]])
    y = np.array([[20.0, 50.0], [20.0, 40.0]])
    # task 1: x runs {10, 30} vs y {20, 20}: 2 wins of 4 -> 0.5; task 2: {50, 50} vs {50, 40}: 2 wins + 2 ties -> 0.75
    assert probability_of_improvement(x, y) == pytest.approx((0.5 + 0.75) / 2)
    assert probability_of_improvement(y, x) == pytest.approx(1 - (0.5 + 0.75) / 2)
    table = improvement_estimates({"x": x, "y": y}, reps=200).set_index(["x", "y"])
    assert table.loc[("x", "y"), "p_x_beats_y"] == pytest.approx(0.625)
    assert table.loc[("x", "y"), "ci_low"] <= 0.625 <= table.loc[("x", "y"), "ci_high"]


def test_score_matrices_are_seeds_by_shared_tasks(write_run, tmp_path):
    for seed in range(3):
        for task in (1, 2):
            write_run("fql", CUBE.format(task), seed, {100: 0.1 * (seed + task)})
        write_run("iql", CUBE.format(1), seed, {100: 0.5})
    matrices, tasks = score_matrices(run_scores(load_runs(tmp_path / "runs"), Aggregation(last_k=1)))
    assert tasks == [CUBE.format(1)]  # iql has no task2: compare on task1 only
    assert matrices["fql"][:, 0].tolist() == pytest.approx([10.0, 20.0, 30.0])  # 0.1 x (seed + 1)
    assert matrices["iql"].shape == (3, 1)


def test_learning_curves_are_seed_means_with_a_band_and_one_figure_per_category(write_run, tmp_path):
    for seed, values in enumerate([(0.0, 0.4), (0.2, 0.8)]):
        write_run("fql", CUBE.format(1), seed, {100: values[0], 200: values[1]})
        write_run("fql", "scene-play-singletask-task1-v0", seed, {100: 0.5, 200: 0.5})
    tidy = load_runs(tmp_path / "runs")
    cube = curves(tidy).query("category == 'cube-single-play'").set_index("step")
    assert cube.loc[200, "mean"] == pytest.approx(60.0)
    assert cube.loc[200, "low"] >= 40.0 - 1e-9 and cube.loc[200, "high"] <= 80.0 + 1e-9  # within the seeds' range
    written = plot_learning_curves(tidy, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == [f"curves-{c}.{s}" for c in ("cube-single-play", "scene-play") for s in ("pdf", "png")]
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "plots" / "curves-scene-play.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plots" / "curves-scene-play.pdf").read_bytes()[:4] == b"%PDF"
