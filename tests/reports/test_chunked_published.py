"""Chunked runs in reports: QC's names for their columns, and the published numbers of the protocol the report
names (Q-chunking's or QAM's), never those of another protocol or of runs with another chunk or reward form."""

from __future__ import annotations

import pytest

from flowsteer.cli import main
from flowsteer.reports.load import ReportWarning, load_runs
from flowsteer.reports.tables import build_report
from flowsteer.reports.variants import variant_name
from flowsteer.reports.writers import to_markdown

CUBE_DOUBLE = "cube-double-play-singletask-task2-v0"
SCENE = "scene-play-singletask-task2-v0"
ANTMAZE = "antmaze-large-navigate-singletask-task1-v0"
O2O = {"offline_steps": 100, "online_steps": 100}  # offline cell at step 100, online cell at 200


def _o2o(write_run, algo, task, offline, online, **run_fields):
    write_run(algo, task, 0, {100: offline, 200: online}, **O2O, run_fields=run_fields)


@pytest.mark.parametrize(
    ("algo", "chunk", "bc_alpha", "column"),
    [("fql", 1, 0, "fql"), ("fql", 5, 0, "qc-fql"), ("bfn", 5, 0, "qc"), ("bfn", 1, 0, "bfn"),
     ("rlpd", 5, 0.01, "qc-rlpd"), ("rlpd", 5, 0, "rlpd-ac"), ("rlpd", 1, 0.01, "rlpd"), ("rebrac", 5, 0, "rebrac")],
)  # fmt: skip
def test_a_chunked_run_takes_qc_s_name_for_its_variant(algo, chunk, bc_alpha, column):
    assert variant_name(algo, chunk, bc_alpha) == column


def test_qc_s_numbers_stand_beside_chunked_runs_of_the_qc_protocol(write_run, tmp_path):
    _o2o(write_run, "bfn", CUBE_DOUBLE, 0.8, 1.0, action_chunk=5)  # QC: 79.0 -> 100.0
    _o2o(write_run, "fql", CUBE_DOUBLE, 0.4, 0.9, action_chunk=5)  # QC-FQL: 43.1 -> 100.0
    _o2o(write_run, "fql", SCENE, 0.5, 0.9, action_chunk=5, sparse_reward=True)  # QC-FQL: 88.0 -> 100.0
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", published="qc"))
    assert "| Row | qc | QC (paper) | qc-fql | QC-FQL (paper) |" in text
    assert "| cube-double-play task2 (*) | **80 ± 0 → 100 ± 0** | 79 → 100 | 40 ± 0 → 90 ± 0 | 43 → 100 |" in text
    assert "| scene-play task2 (*) |  |  | **50 ± 0 → 90 ± 0** | 88 → 100 |" in text
    assert "Q-chunking (Li, Zhou, Levine 2025)" in text and "Action chunks of 5 action(s)" in text


def test_a_number_stands_only_beside_runs_with_its_chunk_and_reward_form(write_run, tmp_path):
    # QC's single-step FQL learned scene from sparse rewards: a run on the environment's own rewards gets no number,
    # and neither does a chunked run under a name QC gives no number (rebrac at H = 5).
    _o2o(write_run, "fql", SCENE, 0.5, 0.9)
    _o2o(write_run, "fql", CUBE_DOUBLE, 0.4, 0.9)  # FQL (H = 1, semi-sparse cube): 36.5 -> 92.0
    _o2o(write_run, "rebrac", CUBE_DOUBLE, 0.1, 0.2, action_chunk=5)
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", published="qc"))
    assert "| Row | fql | FQL (paper) | rebrac |" in text
    assert "| cube-double-play task2 (*) | **40 ± 0 → 90 ± 0** | 36 → 92 | 10 ± 0 → 20 ± 0 |" in text
    assert "| scene-play task2 (*) | **50 ± 0 → 90 ± 0** |  |  |" in text


def test_qam_names_chunked_and_single_step_runs_alike_and_shows_its_own_numbers(write_run, tmp_path):
    _o2o(write_run, "fql", CUBE_DOUBLE, 0.5, 1.0, action_chunk=5)  # QAM FQL, H = 5: 45.8 -> 99.7
    _o2o(write_run, "fql", ANTMAZE, 0.9, 1.0)  # QAM FQL, H = 1: 93.0 -> 99.7 (the DSRL paper's 80 is not shown)
    text = to_markdown(build_report(load_runs(tmp_path / "runs"), "published", published="qam"))
    assert "| Row | fql | FQL (paper) |" in text
    assert "| antmaze-large-navigate task1 (*) | **90 ± 0 → 100 ± 0** | 93 → 100 |" in text
    assert "| cube-double-play task2 (*) | **50 ± 0 → 100 ± 0** | 46 → 100 |" in text
    assert "QAM (Li, Levine 2026)" in text


def test_chunked_runs_show_no_numbers_until_the_report_names_their_protocol(write_run, tmp_path):
    _o2o(write_run, "fql", CUBE_DOUBLE, 0.4, 0.9, action_chunk=5)
    with pytest.warns(ReportWarning, match="--published qc or qam"):
        report = build_report(load_runs(tmp_path / "runs"), "published")
    assert report.published.empty and report.methods() == ["qc-fql"]


def test_runs_of_one_algorithm_with_two_chunk_lengths_are_two_columns(write_run, tmp_path):
    _o2o(write_run, "rebrac", CUBE_DOUBLE, 0.1, 0.2, action_chunk=5)
    write_run("rebrac", CUBE_DOUBLE, 1, {100: 0.3, 200: 0.4}, **O2O)
    with pytest.warns(ReportWarning, match=r"runs differ in action_chunk \[1, 5\]"):
        report = build_report(load_runs(tmp_path / "runs"), "task")
    assert report.methods() == ["rebrac (action_chunk=1)", "rebrac (action_chunk=5)"]


def test_the_report_command_takes_the_protocol_of_the_published_numbers(write_run, tmp_path, capsys):
    _o2o(write_run, "bfn", CUBE_DOUBLE, 0.8, 1.0, action_chunk=5)
    assert main(["report", str(tmp_path / "runs"), "--layout", "published", "--format", "md", "--published", "qc"]) == 0
    assert "| cube-double-play task2 (*) | **80 ± 0 → 100 ± 0** | 79 → 100 |" in capsys.readouterr().out
