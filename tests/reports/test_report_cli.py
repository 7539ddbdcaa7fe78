"""`flowsteer report` as a user runs it: files in every format, the table on stdout, one line per mistake."""

from __future__ import annotations

import pytest

from flowsteer.cli import main

CUBE = "cube-single-play-singletask-task{}-v0"


def test_report_writes_every_format_and_prints_the_table(write_run, tmp_path, capsys):
    for seed, value in enumerate([0.5, 0.7]):
        write_run("fql", CUBE.format(2), seed, {100: 0.0, 200: value})
    out = tmp_path / "tables"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--last-k", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report-task.csv", "report-task.md", "report-task.tex"]
    printed = capsys.readouterr().out
    assert "| cube-single-play task2 (*) | **60 ± 10** |" in printed
    assert str(out / "report-task.tex") in printed


def test_report_chooses_formats_and_layouts(write_run, tmp_path):
    for task in range(1, 6):
        write_run("fql", CUBE.format(task), 0, {100: 0.5})
    args = ["report", str(tmp_path / "runs"), "--format", "csv", "--layout", "category,published", "--last-k", "1"]
    assert main(args) == 0
    files = sorted(p.name for p in (tmp_path / "runs" / "report").iterdir())
    assert files == ["report-category.csv", "report-published.csv"]
    assert "FQL (paper)" in (tmp_path / "runs" / "report" / "report-published.csv").read_text()


def test_report_adds_statistics_and_plots_on_request(write_run, tmp_path):
    for seed in range(3):
        for task in range(1, 3):
            write_run("fql", CUBE.format(task), seed, {100: 0.1 * seed, 200: 0.2 * seed})
    out = tmp_path / "tables"
    assert (
        main(
            [
                "report",
                str(tmp_path / "runs"),
                "--out",
                str(out),
                "--format",
                "md",
                "--stats",
                "--plots",
                "--last-k",
                "1",
            ]
        )
        == 0
    )
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "plots/curves-cube-single-play.pdf",
        "plots/curves-cube-single-play.png",
        "plots/profiles-offline.pdf",
        "plots/profiles-offline.png",
        "report-task.md",
        "stats-offline-improvement.csv",
        "stats-offline-intervals.csv",
        "stats-offline-profiles.csv",
    ]
    assert "IQM" in (out / "stats-offline-intervals.csv").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layout", "seeds"], "Unknown layout(s) seeds; choose from task, category, published"),
        (["--format", "docx"], "Unknown format(s) docx; choose from csv, md, latex"),
        (["--last-k", "0"], "--last-k must be at least 1"),
    ],
)
def test_bad_options_give_one_clear_line(write_run, tmp_path, capsys, extra, message):
    write_run("fql", CUBE.format(2), 0, {100: 0.5})
    assert main(["report", str(tmp_path / "runs"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsteer: error: No runs found under") and "Traceback" not in err


def test_runs_without_evaluations_are_named_in_a_warning(write_run, tmp_path, capsys):
    write_run("fql", CUBE.format(2), 0, {100: 0.5})
    running = write_run("fql", CUBE.format(2), 1, {100: 0.5})
    (running / "eval.csv").unlink()
    (running / "status.json").write_text('{"state": "running"}')
    assert main(["report", str(tmp_path / "runs"), "--format", "md", "--last-k", "1"]) == 0
    captured = capsys.readouterr()
    assert "flowsteer: warning: 1 run(s) left out: " in captured.err
    assert "fql-cube-single-play-singletask-task2-v0-s1 has no evaluations yet (running)" in captured.err
    assert "| cube-single-play task2 (*) | **50 ± 0** |" in captured.out


def test_an_output_folder_that_cannot_be_created_is_one_clear_line(write_run, tmp_path, capsys):
    write_run("fql", CUBE.format(2), 0, {100: 0.5})
    (tmp_path / "a-file").write_text("not a directory")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "a-file" / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsteer: error: cannot use") and "a-file" in err and "Traceback" not in err


def test_a_report_of_one_run_trained_without_evaluations_says_so(write_run, tmp_path, capsys):
    run = write_run("bc", CUBE.format(2), 0, {100: 0.5}, run_fields={"eval_episodes": 0})
    (run / "eval.csv").unlink()
    assert main(["report", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "can be reported" in err and "trained without evaluations (eval_episodes 0): it has no score" in err
