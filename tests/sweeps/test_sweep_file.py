"""Sweep files: expansion into trials, stable ids, and bad files failing before anything launches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from flowsteer.algorithms.registry import chunk_capable_algorithms
from flowsteer.cli import main
from flowsteer.sweeps.spec import GROUPS, SweepSpecError, load_sweep
from flowsteer.sweeps.trials import broadcast_tasks, broadcast_trials, grid_trials, tuning_tasks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_grid_expands_to_algorithms_x_points_x_tasks_x_seeds(write_sweep):
    path = write_sweep(
        algorithms={"bc": {"grid": {"lr": [1e-4, 3e-4]}}, "fql": {"grid": {"alpha": [3, 10, 30]}}},
        tasks=["cube-single-play:1,2"],
        seeds=[0, 5],
    )
    trials = grid_trials(load_sweep(path))
    assert len(trials) == (2 + 3) * 2 * 2
    assert len({t.id for t in trials}) == len(trials)
    fql = [t for t in trials if t.spec.algo == "fql"]
    assert sorted({t.spec.hyperparameters["alpha"] for t in fql}) == [3, 10, 30]
    assert {t.spec.seed for t in trials} == {0, 5}
    assert {t.spec.task for t in trials} == {
        "cube-single-play-singletask-task1-v0",
        "cube-single-play-singletask-task2-v0",
    }


def test_an_algorithm_s_own_run_settings_apply_to_its_trials_only(write_sweep):
    # RLPD runs online only beside methods that pretrain offline: one sweep, two schedules.
    path = write_sweep(algorithms={"bc": {"run": {"offline_steps": 0, "online_steps": 40}}, "fql": {}})
    trials = grid_trials(load_sweep(path))
    steps = {(t.spec.algo, t.spec.offline_steps, t.spec.online_steps) for t in trials}
    assert steps == {("bc", 0, 40), ("fql", 60, 0)}


def test_the_task_options_of_run_reach_every_trial(write_sweep):
    path = write_sweep(tasks=["puzzle-3x3-play:4"], run={"sparse_reward": True, "success_timing": "post"})
    options = {(t.spec.sparse_reward, t.spec.success_timing) for t in grid_trials(load_sweep(path))}
    assert options == {(True, "post")}


def test_trial_ids_are_stable_and_change_with_what_determines_results(write_sweep):
    first = {t.id for t in grid_trials(load_sweep(write_sweep(seeds=2)))}
    again = {t.id for t in grid_trials(load_sweep(write_sweep(seeds=2)))}
    longer = {t.id for t in grid_trials(load_sweep(write_sweep(seeds=2, run={"offline_steps": 80})))}
    elsewhere = {t.id for t in grid_trials(load_sweep(write_sweep(seeds=2, storage="/tmp/other")))}
    assert first == again == elsewhere
    assert not first & longer


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("cube-single-play-singletask-task3-v0", ["cube-single-play-singletask-task3-v0"]),
        ("cube-single-play", [f"cube-single-play-singletask-task{k}-v0" for k in range(1, 6)]),
        ("cube-single-play-v0:default", ["cube-single-play-singletask-task2-v0"]),
        ("puzzle-3x3-play:1,4", ["puzzle-3x3-play-singletask-task1-v0", "puzzle-3x3-play-singletask-task4-v0"]),
    ],
)
def test_task_entries(write_sweep, entry, expected):
    assert list(load_sweep(write_sweep(tasks=[entry])).tasks) == expected


def test_a_group_of_default_tasks_is_one_task_per_dataset(write_sweep):
    tasks = load_sweep(write_sweep(tasks=["fql-paper:default"])).tasks
    assert len(tasks) == len(GROUPS["fql-paper"]) == 10
    assert "scene-play-singletask-task2-v0" in tasks and "antmaze-large-navigate-singletask-task1-v0" in tasks


def test_tune_then_broadcast_tunes_on_default_tasks_and_broadcasts_to_the_rest(write_sweep):
    spec = load_sweep(write_sweep(mode="tune-then-broadcast", tasks=["cube-single-play"],
                                  algorithms={"bc": {"grid": {"lr": [1e-4, 3e-4]}}}))  # fmt: skip
    assert tuning_tasks(spec) == ["cube-single-play-singletask-task2-v0"]
    assert broadcast_tasks(spec) == [f"cube-single-play-singletask-task{k}-v0" for k in (1, 3, 4, 5)]


def test_the_report_caption_of_a_sweep_file_is_kept_for_its_tables(write_sweep):
    spec = load_sweep(write_sweep(report={"caption": "Reduced protocol: 3,000 steps."}))
    assert spec.report.caption == "Reduced protocol: 3,000 steps."


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithms": {"fqll": {}}}, "algorithms.fqll: unknown algorithm 'fqll'. Did you mean fql"),
        ({"algorithms": {"fql": {"grid": {"alpha_": [1]}}}}, "algorithms.fql.grid: fql has no hyperparameter 'alpha_'"),
        ({"algorithms": {"fql": {"grid": {"alpha": []}}}}, "algorithms.fql.grid.alpha must be a non-empty list"),
        ({"algorithms": {"fql": {"grid": {"alpha": 3}}}}, "algorithms.fql.grid.alpha must be a non-empty list"),
        ({"algorithms": {"fql": {"grid": {"batch_size": ["big"]}}}}, "algorithms.fql on cube-single-play"),
        ({"algorithms": {}}, "algorithms must name at least one algorithm"),
        ({"tasks": ["cube-singel-play"]}, "tasks[0]: 'cube-singel-play' is no OGBench dataset"),
        ({"tasks": ["cube-single-play:7"]}, "task numbers 1..5"),
        ({"tasks": []}, "tasks must be a non-empty list"),
        ({"seeds": "three"}, "seeds must be a count"),
        ({"seeds": [0, 0]}, "seeds lists a seed twice"),
        ({"run": {"offline_step": 10}}, "unknown field of run 'offline_step'. Did you mean offline_steps"),
        ({"run": {"offline_steps": -5}}, "offline_steps must be an integer >= 0"),
        ({"run": {"seed": 3}}, "run.seed is set by the sweep itself"),
        ({"resources": {"cpu": 0}}, "resources.cpu must be a number > 0"),
        ({"resources": {"gpu": "one"}}, "resources.gpu must be 0, a fraction"),
        ({"mode": "random"}, "mode must be one of grid, tune-then-broadcast, optuna"),
        ({"mode": "tune-then-broadcast"}, "bc has no grid"),
        ({"mode": "optuna"}, "algorithms.bc.search is empty"),
        ({"algorithms": {"bc": {"search": {"lr": {"loguniform": [0, 1]}}}}, "mode": "optuna"}, "needs low > 0"),
        ({"algorithms": {"bc": {"search": {"lr": {"normal": [0, 1]}}}}, "mode": "optuna"}, "unknown distribution"),
        ({"report": {"layouts": ["tasks"]}}, "report.layouts must be a non-empty list from task, category"),
        ({"report": {"caption": ["reduced"]}}, "report.caption must be text"),
        ({"report": {"published": "qcc"}}, "report.published must be one of auto, fql, qc, qam, got 'qcc'"),
        ({"max_failures": 1.5}, "max_failures must be an integer >= 0"),
        ({"nmae": "x"}, "unknown sweep field 'nmae'. Did you mean name?"),
        ({"resources": {"cpu": float("nan")}}, "resources.cpu must be a number > 0, got nan"),
        ({"resources": {"gpu": float("inf")}}, "resources.gpu must be 0, a fraction"),
        ({"storage": ["a"]}, "storage must be a directory name"),
        (
            {"algorithms": {"bc": {"search": {"lr": {"loguniform": [1e-4, float("inf")]}}}}, "mode": "optuna"},
            "algorithms.bc.search.lr.loguniform must be [low, high] with low < high",
        ),
        ({"algorithms": {"fql": {"grid": {"alpha": [10, 10.0]}}}}, "algorithms.fql.grid.alpha lists one value twice"),
        ({"run": {"eval_episodes": 0}}, "run.eval_episodes is 0: a trial's score"),
        (
            {"run": {"eval_interval": 30}},
            "schedules 2 evaluation(s), but a trial's score (and its report cell) "
            "averages the last 3: set eval_interval to at most 20",
        ),
        ({"run": {"offline_steps": 10**30}}, "run.offline_steps must be at most 2,147,483,647"),
        ({"tracking_uri": "http://bob:Hunter2@127.0.0.1:5000"}, "tracking_uri http://bob:***@127.0.0.1:5000 holds"),
        ({"algorithms": {"bc": {"run": {"offline_stepz": 0}}}}, "algorithms.bc.run: unknown field of run"),
        ({"algorithms": {"bc": {"run": {"data": {"source": "generated"}}}}}, "algorithms.bc.run.data is the same"),
        ({"algorithms": {"bc": {"run": {"seed": 1}}}}, "algorithms.bc.run.seed is set by the sweep itself"),
        ({"algorithms": {"bc": {"run": {"eval_interval": 30}}}}, "algorithms.bc.run: eval_interval 30"),
        ({"run": {"sparse_reward": True}}, "sparse_reward changes nothing on cube-single-play-singletask-task2-v0"),
        ({"algorithms": {"bc": {"grid": {"lrr": [1]}}}}, "bc has no hyperparameter 'lrr' (nor a run setting"),
        ({"algorithms": {"bc": {"grid": {"data": [{}]}}}}, "bc has no hyperparameter 'data' (nor a run setting"),
        ({"algorithms": {"bc": {"hyperparameters": {"utd": 2}}}}, "(it is a run setting: set it in algorithms.bc.run)"),
        ({"algorithms": {"bc": {"grid": {"utd": [1, 2]}, "run": {"utd": 3}}}}, "utd is both fixed (run) and swept"),
        ({"algorithms": {"bc": {"grid": {"eval_episodes": [0, 2]}}}}, "algorithms.bc.grid.eval_episodes is 0"),
        ({"tasks": [{"select": "cube-single-play:default", "run": {"seed": 1}}]}, "tasks[0].run.seed is set by"),
        ({"tasks": [{"select": "cube-single-play:default", "run": {"data": {}}}]}, "tasks[0].run.data is the same"),
        ({"tasks": [{"select": "cube-singel-play:1"}]}, "tasks[0].select: 'cube-singel-play' is no OGBench dataset"),
        ({"tasks": [{"select": "cube-single-play:1", "rnu": {}}]}, "tasks[0]: unknown field of a task entry 'rnu'"),
        ({"tasks": [5]}, "tasks[0] must be a task selector or a mapping"),
        (
            {"tasks": [{"select": "cube-single-play:1", "hyperparameters": {"fql": {"alpha": 3}}}]},
            "hyperparameters.fql names no algorithm of this sweep (bc)",
        ),
        (
            {"tasks": [{"select": "cube-single-play:1", "hyperparameters": {"bc": {"lrr": 3}}}]},
            "bc has no hyperparameter 'lrr'. Did you mean lr?",
        ),
        (
            {"tasks": ["cube-single-play", {"select": "cube-single-play:2", "run": {"utd": 2}}]},
            "tasks[0] and tasks[1] both name cube-single-play-singletask-task2-v0",
        ),
        (
            {
                "algorithms": {"bc": {"grid": {"lr": [1e-3]}}},
                "tasks": [{"select": "cube-single-play:1", "hyperparameters": {"bc": {"lr": 3e-4}}}],
            },
            "tasks entry 'cube-single-play:1' and algorithms.bc both set lr",
        ),
        (
            {"algorithms": {"bc": {"run": {"utd": 2}}}, "tasks": [{"select": "cube-single-play:1", "run": {"utd": 3}}]},
            "tasks entry 'cube-single-play:1'.run and algorithms.bc both set utd",
        ),
        (
            {"tasks": [{"select": "cube-single-play:1", "run": {"eval_interval": 30}}]},
            "tasks entry 'cube-single-play:1'.run: eval_interval 30",
        ),
    ],
)
def test_bad_sweep_files_fail_with_a_message_naming_the_field(write_sweep, fields, message):
    with pytest.raises(SweepSpecError) as caught:
        load_sweep(write_sweep(**fields))
    assert message in str(caught.value)


def test_the_cli_reports_a_bad_file_in_one_line_and_launches_nothing(write_sweep, tmp_path, capsys):
    path = write_sweep(algorithms={"bc": {"hyperparameters": {"lrr": 1e-3}}})
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsteer: error: ") and "no hyperparameter 'lrr'. Did you mean lr?" in err
    assert not (tmp_path / "storage").exists()


def test_unreadable_and_non_mapping_files_are_clear_errors(tmp_path):
    with pytest.raises(SweepSpecError, match="cannot read sweep file"):
        load_sweep(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- bc\n- fql\n")
    with pytest.raises(SweepSpecError, match="must hold a mapping"):
        load_sweep(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("algorithms: [bc\n")
    with pytest.raises(SweepSpecError, match="not valid YAML"):
        load_sweep(tmp_path / "broken.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfealgorithms: [bc]\n")
    with pytest.raises(SweepSpecError, match=r"sweep file .*binary.yaml is not UTF-8 text \(byte 0xff at offset 0\)"):
        load_sweep(tmp_path / "binary.yaml")


def test_a_key_given_twice_is_refused_not_silently_replaced(tmp_path):
    (tmp_path / "twice.yaml").write_text(
        "algorithms:\n  bc: {grid: {lr: [0.1]}}\n  bc: {}\ntasks: [cube-single-play]\n"
    )
    with pytest.raises(SweepSpecError, match=r"key 'bc' appears twice \(lines 2 and 3\)"):
        load_sweep(tmp_path / "twice.yaml")


@pytest.mark.integration  # over ~10 s on 2 cores (compiles several updates, or starts Ray)
def test_a_gpu_request_on_a_cluster_without_gpus_fails_before_any_trial(write_sweep, tmp_path, capsys):
    path = write_sweep(resources={"cpu": 1, "gpu": 0.5})
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "resources.gpu is 0.5 per trial but the cluster at local has no GPU" in err
    assert not (tmp_path / "storage" / "sweep" / "runs").exists()


def test_the_dry_run_prints_every_trial_and_starts_nothing(write_sweep, tmp_path, capsys):
    path = write_sweep(algorithms={"bc": {"grid": {"lr": [1e-4, 3e-4]}}}, seeds=2)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 grid trial(s); 0 finished, 0 to resume, 4 new" in out
    for trial in grid_trials(load_sweep(path)):
        assert trial.id in out
    assert not (tmp_path / "storage").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_the_example_sweep_files_are_valid(name, tmp_path, pending_example):
    if pending_example(name):
        pytest.skip(pending_example(name))
    spec = load_sweep(EXAMPLES / name, storage=tmp_path)
    assert spec.name == yaml.safe_load((EXAMPLES / name).read_text())["name"]
    assert spec.tasks and spec.algorithms


def test_a_task_entry_gives_only_its_own_tasks_its_run_settings_and_hyperparameters(write_sweep):
    # QAM's protocol in small: sparse rewards and another alpha on some domains only (docs/chunking.md).
    path = write_sweep(
        algorithms={"bc": {}, "fql": {"grid": {"alpha": [3, 10]}}},
        tasks=[
            "cube-single-play:default",
            {"select": ["scene-play:default", "puzzle-3x3-play:4"], "run": {"utd": 2, "online_steps": 40},
             "hyperparameters": {"fql": {"q_agg": "min"}}},
        ],
    )  # fmt: skip
    trials = grid_trials(load_sweep(path))
    assert len(trials) == (1 + 2) * 3
    for trial in trials:
        in_entry = not trial.spec.task.startswith("cube-single-play")
        assert (trial.spec.utd, trial.spec.online_steps) == ((2, 40) if in_entry else (1, 0))
        q_agg = trial.spec.hyperparameters.get("q_agg")
        assert q_agg == ("min" if in_entry and trial.spec.algo == "fql" else None)
    assert {t.spec.hyperparameters.get("alpha") for t in trials if t.spec.algo == "fql"} == {3, 10}


def test_a_grid_over_a_run_setting_gives_one_trial_and_run_id_per_value(write_sweep):
    path = write_sweep(algorithms={"bc": {"grid": {"lr": [1e-4, 3e-4], "eval_episodes": [2, 4]}}}, seeds=2)
    trials = grid_trials(load_sweep(path))
    assert len(trials) == len({t.id for t in trials}) == 2 * 2 * 2
    assert len({t.setting for t in trials}) == 4  # seeds of one (lr, eval_episodes) share a setting, no others
    assert {(t.spec.hyperparameters["lr"], t.spec.eval_episodes) for t in trials} == {
        (lr, n) for lr in (1e-4, 3e-4) for n in (2, 4)
    }
    assert all("eval_episodes" not in t.spec.hyperparameters for t in trials)


def test_a_broadcast_setting_carries_the_run_settings_its_grid_chose(write_sweep):
    spec = load_sweep(write_sweep(mode="tune-then-broadcast", tasks=["cube-single-play:2,3"],
                                  algorithms={"bc": {"grid": {"eval_episodes": [2, 4]}}}))  # fmt: skip
    trials = broadcast_trials(spec, {("bc", "cube-single-play-v0"): {"eval_episodes": 4}})
    assert [(t.spec.task, t.spec.eval_episodes, t.spec.hyperparameters) for t in trials] == [
        ("cube-single-play-singletask-task3-v0", 4, {})
    ]


@pytest.mark.skipif(not chunk_capable_algorithms(), reason="no learner on this checkout acts in chunks yet")
def test_a_grid_over_action_chunk_gives_distinct_trials_and_keeps_h1_ids(write_sweep):
    algo = chunk_capable_algorithms()[0]
    chunked = grid_trials(load_sweep(write_sweep(algorithms={algo: {"grid": {"action_chunk": [1, 5]}}})))
    plain = grid_trials(load_sweep(write_sweep(algorithms=[algo])))
    assert [t.spec.action_chunk for t in chunked] == [1, 5]
    assert chunked[0].id == plain[0].id != chunked[1].id  # H = 1 is the run it always was


# Trial ids of the example files before action chunking (sha256 of the sorted ids): a sweep that ran them finds its
# runs again.
EXAMPLE_IDS = {
    "dsrl.yaml": (24, "d659e4a46d74c449"),
    "fql-o2o.yaml": (144, "166151bbc59f4372"),
    "fql-optuna.yaml": (3, "2ef4d52094ddfced"),
    "fql-paper-offline.yaml": (2000, "6344df4d87df47a6"),
    "fql-tune-then-broadcast.yaml": (200, "4f18ce4b1d9fe3e1"),
    "quickstart.yaml": (4, "275320ca4ab6afd5"),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_IDS))
def test_the_earlier_example_files_keep_their_trial_ids(name, tmp_path):
    ids = sorted(t.id for t in grid_trials(load_sweep(EXAMPLES / name, storage=tmp_path)))
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]) == EXAMPLE_IDS[name]


def test_the_qc_example_runs_q_chunking_s_protocol(tmp_path, pending_example):
    if pending_example("qc-o2o.yaml"):
        pytest.skip(pending_example("qc-o2o.yaml"))
    trials = grid_trials(load_sweep(EXAMPLES / "qc-o2o.yaml", storage=tmp_path))
    assert len(trials) == 5 * 3 * 4
    assert {(t.spec.algo, t.spec.action_chunk) for t in trials} == {
        ("bfn", 5), ("fql", 1), ("fql", 5), ("rlpd", 1), ("rlpd", 5)
    }  # fmt: skip
    for t in trials:
        assert (t.spec.offline_steps, t.spec.online_steps) == (0 if t.spec.algo == "rlpd" else 1_000_000, 1_000_000)
        assert t.spec.sparse_reward == t.spec.task.startswith(("scene", "puzzle"))
        assert t.spec.success_timing == "post"


def test_the_qam_example_runs_qam_s_protocol(tmp_path, pending_example):
    if pending_example("qam-offline.yaml"):
        pytest.skip(pending_example("qam-offline.yaml"))
    trials = grid_trials(load_sweep(EXAMPLES / "qam-offline.yaml", storage=tmp_path))
    assert len(trials) == 5 * 7 * 12
    for t in trials:
        manipulation = t.spec.task.startswith(("cube", "scene", "puzzle"))
        assert t.spec.action_chunk == (5 if manipulation else 1)
        assert t.spec.sparse_reward == t.spec.task.startswith(("scene", "puzzle"))
        assert (t.spec.offline_steps, t.spec.online_steps) == (0 if t.spec.algo == "rlpd" else 1_000_000, 500_000)
