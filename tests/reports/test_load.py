"""Loading run directories into the tidy table, its Parquet cache, and the errors for bad sources."""

from __future__ import annotations

import json

import pytest

from flowsteer.reports.load import CACHE_DIR, ReportError, ReportWarning, load_runs
from flowsteer.rundir import RunDirectory

from .conftest import eval_row

TASK = "antmaze-large-navigate-singletask-task1-v0"


def test_the_tidy_table_has_one_row_per_run_step_and_metric_with_run_facts(write_run, tmp_path):
    write_run("fql", TASK, 3, {100: 0.25, 200: 0.5}, hyperparameters={"alpha": 10}, source="generated")
    tidy = load_runs(tmp_path / "runs")
    assert len(tidy) == 2 * 4  # two steps x (episode_length, episode_return, episodes, success)
    row = tidy[(tidy["metric"] == "success") & (tidy["step"] == 200)].iloc[0]
    assert row["value"] == 0.5
    assert (row["algorithm"], row["task"], row["seed"]) == ("fql", TASK, 3)
    assert (row["dataset"], row["category"]) == ("antmaze-large-navigate-v0", "antmaze-large-navigate")
    assert bool(row["default_task"])
    assert json.loads(row["hyperparameters"]) == {"alpha": 10}
    assert row["provenance"].startswith("data=generated generator=")
    assert "ogbench=1.2.2" in row["provenance"] and "jax=0.10.2" in row["provenance"]


def test_the_parquet_cache_is_used_and_rebuilt_when_a_run_file_changes(write_run, tmp_path):
    run = write_run("fql", TASK, 0, {100: 0.25})
    assert load_runs(tmp_path / "runs")["value"].max() > 0
    assert len(list((tmp_path / "runs" / CACHE_DIR).glob("*.parquet"))) == 1
    (run / "eval.csv").unlink()  # rewritten with other numbers
    for step, success in ((100, 0.75), (200, 0.5)):
        RunDirectory(run).append_row("eval.csv", eval_row(step, success))
    tidy = load_runs(tmp_path / "runs")
    assert set(tidy.loc[tidy["metric"] == "success", "value"]) == {0.75, 0.5}
    assert len(list((tmp_path / "runs" / CACHE_DIR).glob("*.parquet"))) == 1  # the stale file is gone


def test_a_new_run_invalidates_the_cache(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25})
    assert load_runs(tmp_path / "runs")["run"].nunique() == 1
    write_run("fql", TASK, 1, {100: 0.25})
    assert load_runs(tmp_path / "runs")["run"].nunique() == 2


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="No runs found under"):
        load_runs(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        load_runs(tmp_path / "nowhere")


def test_a_finished_run_missing_its_protocol_is_left_out_with_a_warning_naming_it(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25})
    broken = write_run("fql", TASK, 1, {100: 0.25})
    (broken / "protocol.json").unlink()
    with pytest.warns(ReportWarning, match=r"1 run\(s\) left out: .*s1 is finished but its protocol.json is missing"):
        tidy = load_runs(tmp_path / "runs")
    assert list(tidy["seed"].unique()) == [0]


def test_a_report_with_no_readable_run_is_an_error_that_says_why(write_run, tmp_path):
    run = write_run("fql", TASK, 0, {100: 0.25})
    (run / "protocol.json").unlink()
    with pytest.raises(ReportError, match=r"No run under .* can be reported: .*protocol.json is missing"):
        load_runs(tmp_path / "runs")


def test_a_config_without_a_run_section_is_left_out(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25})
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    for name in ("config.json", "protocol.json"):
        (run / name).write_text("{}")
    (run / "eval.csv").write_text("step,success\n1,0.5\n")
    with pytest.warns(ReportWarning, match="no 'run' section"):
        assert load_runs(tmp_path / "runs")["run"].nunique() == 1


def test_runs_are_found_at_any_depth_and_not_inside_other_runs(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25}, root=tmp_path / "runs" / "sweep-a")
    inner = write_run("fql", TASK, 1, {100: 0.25}, root=tmp_path / "runs" / "sweep-b" / "group")
    (inner / "checkpoints" / "step_1").mkdir(parents=True)
    (inner / "checkpoints" / "step_1" / "config.json").write_text("{}")  # not a run: inside one
    tidy = load_runs(tmp_path / "runs")
    assert sorted(tidy["seed"].unique()) == [0, 1]


def test_a_run_stopped_before_its_first_evaluation_is_left_out_with_a_warning(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25})
    failed = write_run("fql", TASK, 1, {100: 0.25})
    (failed / "eval.csv").unlink()
    (failed / "status.json").write_text(json.dumps({"state": "failed", "message": "MissingOfficialDataError"}))
    with pytest.warns(ReportWarning, match=r"1 run\(s\) left out: .*s1 has no evaluations yet \(failed\)"):
        tidy = load_runs(tmp_path / "runs")
    assert list(tidy["seed"].unique()) == [0]


def test_a_run_trained_without_evaluations_is_left_out_as_having_no_score(write_run, tmp_path):
    write_run("fql", TASK, 0, {100: 0.25})
    quiet = write_run("fql", TASK, 1, {100: 0.25})
    (quiet / "eval.csv").unlink()
    config = json.loads((quiet / "config.json").read_text())
    config["run"]["eval_episodes"] = 0
    (quiet / "config.json").write_text(json.dumps(config))
    with pytest.warns(ReportWarning, match=r"trained without evaluations \(eval_episodes 0\)"):
        assert list(load_runs(tmp_path / "runs")["seed"].unique()) == [0]


DAMAGE = {
    "config.json cut short": ("config.json", b'{"run": {"algo": "fq'),
    "protocol.json cut short": ("protocol.json", b'{"evaluation": '),
    "status.json cut short": ("status.json", b'{"state": "fin'),
    "empty eval.csv": ("eval.csv", b""),
    "binary eval.csv": ("eval.csv", b"\xff\xfe\x00\x01garbage"),
    "NUL-padded eval.csv": ("eval.csv", b"step,success\n100.0,0.25\n" + b"\x00" * 56),
    "eval.csv with a word": ("eval.csv", b"step,success\n100.0,abc\n"),
    "eval.csv with a short row": ("eval.csv", b"step,episodes,success\n100.0,0.25\n"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_one_damaged_run_directory_is_skipped_with_a_warning_and_the_others_reported(write_run, tmp_path, damage):
    write_run("fql", TASK, 0, {100: 0.25})
    broken = write_run("fql", TASK, 1, {100: 0.5})
    name, content = DAMAGE[damage]
    (broken / name).write_bytes(content)
    with pytest.warns(ReportWarning, match=rf"1 run\(s\) left out: {broken}"):
        tidy = load_runs(tmp_path / "runs")
    assert list(tidy["seed"].unique()) == [0]


def test_a_last_row_without_its_newline_is_left_out_and_flagged(write_run, tmp_path):
    run = write_run("fql", TASK, 0, {100: 0.25, 200: 0.7})
    text = (run / "eval.csv").read_bytes()
    (run / "eval.csv").write_bytes(text[:-2])  # "0.7\n" -> "0." as a crash or an editor leaves it
    with pytest.warns(ReportWarning, match=r"ends in an incomplete row without its newline"):
        tidy = load_runs(tmp_path / "runs")
    assert sorted(tidy.loc[tidy["metric"] == "success", "step"]) == [100]
