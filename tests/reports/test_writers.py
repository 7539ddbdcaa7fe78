"""Rendered tables: CSV keeps every number unrounded, Markdown and LaTeX print what the papers print."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from flowsteer.reports.aggregate import Aggregation
from flowsteer.reports.load import load_runs
from flowsteer.reports.tables import build_report
from flowsteer.reports.writers import latex_escape, to_csv, to_latex, to_markdown

CUBE = "cube-single-play-singletask-task{}-v0"
ANTMAZE = "antmaze-large-navigate-singletask-task{}-v0"
LAST = Aggregation(last_k=1)


@pytest.fixture
def two_algorithms(write_run, tmp_path):
    """fql and iql, 2 seeds, cube task1 and task2 (default); one evaluation each, so every number is visible."""
    values = {("fql", 1): [0.2, 0.4], ("iql", 1): [0.3, 0.3], ("fql", 2): [0.8, 0.6], ("iql", 2): [0.5, 0.5]}
    for (algo, task), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            write_run(algo, CUBE.format(task), seed, {100: value})
    return load_runs(tmp_path / "runs")


def test_markdown_prints_integer_mean_std_bold_and_the_default_task_marker(two_algorithms):
    text = to_markdown(build_report(two_algorithms, "task", LAST))
    assert "| Task | fql | iql |" in text
    assert "| cube-single-play task1 | **30 ± 10** | **30 ± 0** |" in text  # a tie: both bold
    assert "| cube-single-play task2 (*) | **70 ± 10** | 50 ± 0 |" in text  # 50 < 0.95 x 70


def test_the_caption_is_written_from_the_protocol(two_algorithms):
    caption = build_report(two_algorithms, "task", LAST).caption
    assert "Offline training: 100 gradient steps." in caption
    assert "last 1 evaluation(s) (steps 100)" in caption
    assert "Each evaluation runs 50 episodes." in caption
    assert "Mean ± std (ddof=0) over 2 seeds (0-1)." in caption
    assert "official OGBench datasets, ogbench 1.2.2, jax 0.10.2" in caption
    assert "95%" in caption and "(*) marks the default task" in caption


def test_a_given_caption_opens_the_markdown_and_latex_captions(two_algorithms):
    report = build_report(two_algorithms, "task", LAST, caption="Reduced protocol: 100 steps, not 1M.")
    assert to_markdown(report).startswith("**Task table.** Reduced protocol: 100 steps, not 1M. Success rate")
    assert r"\caption{Reduced protocol: 100 steps, not 1M. Success rate (\%)" in to_latex(report)


def test_csv_holds_every_number_unrounded_with_its_protocol(write_run, tmp_path):
    for seed, value in enumerate([0.123, 0.456, 0.789]):
        write_run("fql", CUBE.format(1), seed, {100: value})
    text = to_csv(build_report(load_runs(tmp_path / "runs"), "task", LAST))
    row = pd.read_csv(io.StringIO(text)).iloc[0]
    assert row["mean"] == pytest.approx((12.3 + 45.6 + 78.9) / 3, abs=1e-12)
    assert row["mean"] != round(row["mean"])
    assert (row["ddof"], row["n_seeds"], row["last_k"], row["seeds"]) == (0, 3, 1, "0 1 2")
    assert row["kind"] == "flowsteer" and bool(row["bold"])


def test_a_category_table_has_one_row_per_dataset(write_run, tmp_path):
    for task in range(1, 6):
        write_run("fql", CUBE.format(task), 0, {100: task / 10})
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "category", LAST))
    assert "| cube-single-play (5 tasks) | **30 ± 0** |" in text  # (0.1 + ... + 0.5) / 5; one seed: std 0


def test_offline_to_online_cells_read_x_arrow_y(write_run, tmp_path):
    for seed, (at_300, at_500) in enumerate([(0.2, 0.6), (0.4, 1.0)]):
        write_run("fql", CUBE.format(2), seed, {100: 0, 300: at_300, 500: at_500}, offline_steps=300, online_steps=200)
    report = build_report(load_runs(tmp_path / "runs"), "task")
    assert "| cube-single-play task2 (*) | **30 ± 10 → 80 ± 20** |" in to_markdown(report)
    assert r"30 $\pm$ 10 $\to$ 80 $\pm$ 20" in to_latex(report)
    assert "end of the offline phase → after 200 online environment steps" in report.caption


def test_flags_become_numbered_notes(write_run, tmp_path):
    for seed in range(2):
        write_run("fql", CUBE.format(1), seed, {100: 0.5})
    write_run("iql", CUBE.format(1), 0, {100: 0.5})
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "task", LAST))
    assert "| cube-single-play task1 | **50 ± 0** | **50 ± 0** [1] |" in text
    assert "[1] iql, cube-single-play task1: missing seeds 1" in text


def test_published_numbers_stand_beside_the_users_for_the_same_algorithm_and_task(write_run, tmp_path):
    write_run("fql", ANTMAZE.format(1), 0, {100: 0.7})  # the DSRL paper's table: FQL 80 ± 8 on the default task
    write_run("fql", ANTMAZE.format(2), 0, {100: 0.5})  # no published per-task number
    write_run("ifql", CUBE.format(1), 0, {100: 0.1})  # no paper reports IFQL on cube task1: no column
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", LAST))
    assert "| Row | fql | FQL (paper) | ifql |" in text
    assert "| antmaze-large-navigate task1 (*) | **70 ± 0** | 80 ± 8 |  |" in text
    assert "| antmaze-large-navigate task2 | **50 ± 0** |  |  |" in text
    assert "IFQL (paper)" not in text
    assert "(5 tasks)" not in text  # no category has all five tasks of a seed


def test_dsrl_and_flow_bc_stand_beside_the_dsrl_papers_numbers(write_run, tmp_path):
    write_run("dsrl_na", ANTMAZE.format(1), 0, {100: 0.5})  # the DSRL paper's offline table: DSRL 40 ± 29
    write_run("flow_bc", ANTMAZE.format(1), 0, {100: 0.1})  # and its BC-flow: 0 ± 0
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", LAST))
    assert "| Row | dsrl_na | DSRL (paper) | flow_bc | BC-flow (paper) |" in text
    assert "| antmaze-large-navigate task1 (*) | **50 ± 0** | 40 ± 29 | 10 ± 0 | 0 ± 0 |" in text


def test_published_offline_to_online_numbers_read_x_arrow_y(write_run, tmp_path):
    scene = "scene-play-singletask-task2-v0"  # FQL paper Table 4: 82 → 100 (means only)
    write_run("fql", scene, 0, {100: 0.5, 200: 0.9}, offline_steps=100, online_steps=100)
    report = build_report(load_runs(tmp_path / "runs"), "published")
    assert "| scene-play task2 (*) | **50 ± 0 → 90 ± 0** | 82 → 100 |" in to_markdown(report)
    paper = pd.read_csv(io.StringIO(to_csv(report))).query("kind == 'published'")
    assert sorted(paper["mean"]) == [82.0, 100.0] and set(paper["bold"]) == {False}


def test_latex_escapes_special_characters():
    assert latex_escape("a_b & 50% #1 {x} ~ ^") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{}"
    assert latex_escape("back\\slash") == r"back\textbackslash{}slash"


def test_latex_is_a_booktabs_table_with_bold_cells(two_algorithms):
    text = to_latex(build_report(two_algorithms, "task", LAST))
    assert text.count(r"\toprule") == text.count(r"\midrule") == text.count(r"\bottomrule") == 1
    assert r"cube-single-play task2 (*) & \textbf{70 $\pm$ 10} & 50 $\pm$ 0 \\" in text
    assert r"\caption{Success rate (\%)" in text


def test_published_category_rows_stand_beside_a_complete_category(write_run, tmp_path):
    for task in range(1, 6):  # FQL paper Table 2: antmaze-large-navigate (5 tasks) 79 ± 3
        write_run("fql", ANTMAZE.format(task), 0, {100: 0.8})
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", LAST))
    assert "| antmaze-large-navigate (5 tasks) | **80 ± 0** | 79 ± 3 |" in text
    assert "| antmaze-large-navigate task1 (*) | **80 ± 0** | 80 ± 8 |" in text  # DSRL paper's table


def test_a_task_in_both_settings_gets_two_labelled_rows(write_run, tmp_path):
    write_run("fql", CUBE.format(2), 0, {100: 0.5})
    write_run("fql", CUBE.format(2), 1, {100: 0.5, 200: 0.9}, offline_steps=100, online_steps=100)
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "task", LAST))
    assert "| cube-single-play task2 (*) [offline] | **50 ± 0** |" in text  # seeds are expected per setting
    assert "| cube-single-play task2 (*) [offline-to-online] | **50 ± 0 → 90 ± 0** |" in text


def test_runs_of_two_commits_describe_their_data_once(write_run, tmp_path):
    # Two columns run at two commits: their provenance keys differ by the commit, which the words leave out, so
    # the caption names the same data once.
    for algo, commit in [("fql", "a" * 40), ("iql", "b" * 40)]:
        write_run(algo, CUBE.format(2), 0, {100: 0.5}, git_sha=commit)
    caption = build_report(load_runs(tmp_path / "runs"), "task", LAST).caption
    assert caption.count("official OGBench datasets, ogbench 1.2.2, jax 0.10.2") == 1
