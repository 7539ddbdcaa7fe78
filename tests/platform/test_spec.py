"""RunSpec: bad input fails before any work, with the field and the fix; ids are stable."""

from __future__ import annotations

import pytest

from flowsteer.datasets import options
from flowsteer.platform.spec import NEUTRAL_IDENTITY, DataSpec, RunSpec, RunSpecError, identity_of, role_of

BASE = {"algo": "fql", "task": "scene-play-singletask-v0"}


def test_defaults_follow_the_fql_paper_protocol() -> None:
    spec = RunSpec.from_dict(BASE)
    assert (spec.offline_steps, spec.online_steps, spec.eval_interval, spec.eval_episodes) == (
        1_000_000,
        0,
        100_000,
        50,
    )
    assert spec.task == "scene-play-singletask-task2-v0" and spec.setting == "offline"
    assert spec.algo_config().alpha == 300.0  # the paper's scene setting
    online = RunSpec.from_dict(BASE | {"online_steps": 1_000_000})
    assert online.setting == "offline-to-online" and online.buffer_size == 2_000_000


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"algo": "fqll"}, "algo 'fqll' is unknown. Did you mean fql"),
        ({"task": "scene-play-singletask-task9-v0"}, "task: Task 'scene-play-singletask-task9-v0'"),
        ({"offline_step": 10}, "unknown run field 'offline_step'. Did you mean offline_steps"),
        ({"eval_episodes": -1}, "eval_episodes must be an integer >= 0, got -1"),
        ({"seed": "one"}, "seed must be an integer >= 0, got 'one'"),
        ({"offline_steps": 0}, "both 0: the run would do nothing"),
        ({"hyperparameters": {"alpah": 3}}, "hyperparameters: unknown hyperparameter(s) for fql: 'alpah'"),
        ({"data": {"episode": 3}}, "unknown data field 'episode'. Did you mean episodes"),
        ({"data": {"source": "web"}}, "data.source must be one of auto, official, generated"),
        ({"hyperparameters": {"batch_size": "big"}}, "hyperparameters: batch_size must be an integer (default 256)"),
        ({"hyperparameters": {"alpha": True}}, "hyperparameters: alpha must be a number"),
        ({"hyperparameters": {"actor_hidden_dims": 512}}, "hyperparameters: actor_hidden_dims must be a list"),
    ],
)
def test_bad_input_names_the_field_and_what_it_accepts(values: dict, message: str) -> None:
    with pytest.raises(RunSpecError) as error:
        RunSpec.from_dict(BASE | values)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"offline_steps": 10**30}, "offline_steps must be at most 2,147,483,647"),
        ({"online_steps": 2**31 - 1, "utd": 4}, "learners count updates in 32 bits"),
        ({"seed": 2**32}, "seed must be at most 4,294,967,295"),  # PRNGKey(2**32) would equal PRNGKey(0)
        ({"eval_interval": 1}, "1,000,000 evaluations; at most 10,000 are allowed: raise eval_interval to 100 or"),
        ({"eval_episodes": 10**9}, "eval_episodes must be at most 100,000"),
        ({"buffer_size": 10**12}, "buffer_size must be at most 2,147,483,647"),
        ({"data": {"episodes": 10**8}}, "data.episodes must be at most 100,000"),
        ({"hyperparameters": {"batch_size": 0}}, "hyperparameters: batch_size must be an integer >= 1, got 0"),
        ({"hyperparameters": {"flow_steps": 0}}, "hyperparameters: flow_steps must be an integer >= 1, got 0"),
        ({"hyperparameters": {"actor_hidden_dims": [-64]}}, "actor_hidden_dims must be a non-empty list of integers"),
        ({"hyperparameters": {"value_hidden_dims": ["a", "b"]}}, "value_hidden_dims must be a non-empty list"),
        ({"hyperparameters": {"actor_hidden_dims": []}}, "actor_hidden_dims must be a non-empty list of integers"),
        ({"hyperparameters": {"alpha": float("nan")}}, "alpha must be a finite number, got nan"),
        ({"hyperparameters": {"alpha": -1.0}}, "alpha must be a number >= 0, got -1.0"),
        ({"hyperparameters": {"lr": 0.0}}, "lr must be a number > 0, got 0.0"),
        ({"hyperparameters": {"discount": 1.5}}, "discount must be a number in (0, 1], got 1.5"),
        ({"hyperparameters": {"tau": 0.0}}, "tau must be a number in (0, 1], got 0.0"),
        ({"tracking_uri": "http://alice:S3cret@host:5000"}, "holds a password"),
        ({"algo": "fawac", "hyperparameters": {"max_weight": 0.0}}, "max_weight must be a number > 0, got 0.0"),
        ({"algo": "fawac", "hyperparameters": {"rho": -0.5}}, "rho must be a number >= 0, got -0.5"),
    ],
)
def test_absurd_values_fail_before_any_work_with_one_line(values: dict, message: str) -> None:
    with pytest.raises(RunSpecError) as error:
        RunSpec.from_dict(BASE | values)
    assert message in str(error.value)


def test_run_id_depends_on_what_changes_results_only() -> None:
    spec = RunSpec.from_dict(BASE)
    assert spec.run_id == RunSpec.from_dict(BASE | {"output_dir": "elsewhere", "eval_workers": 2}).run_id
    assert spec.run_id == RunSpec.from_dict({**BASE, "task": "scene-play-singletask-task2-v0"}).run_id
    assert spec.run_id != RunSpec.from_dict(BASE | {"seed": 1}).run_id
    assert spec.run_id != RunSpec.from_dict(BASE | {"hyperparameters": {"alpha": 100}}).run_id
    assert spec.run_id.startswith("fql-scene-play-task2-s0-")


def test_relative_sqlite_uris_become_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert RunSpec.from_dict(BASE).resolved_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    relative = RunSpec.from_dict(BASE | {"tracking_uri": "sqlite:///store/m.db"})
    assert relative.resolved_tracking_uri() == f"sqlite:///{tmp_path}/store/m.db"


def test_a_relative_base_run_becomes_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = RunSpec.from_dict(
        {"algo": "dsrl_na", "task": "cube-single-play-singletask-v0", "hyperparameters": {"base_run": "runs/base"}}
    )
    assert spec.hyperparameters["base_run"] == str(tmp_path / "runs" / "base")


def test_every_run_field_declares_whether_it_is_identity_or_execution() -> None:
    roles = {name: role_of(field) for name, field in RunSpec.model_fields.items()}
    roles |= {f"data.{name}": role_of(field) for name, field in DataSpec.model_fields.items()}
    assert set(roles.values()) == {"identity", "execution"}


def test_only_identity_fields_reach_the_run_id() -> None:
    spec = RunSpec.from_dict(BASE)
    changed = RunSpec.from_dict(
        BASE | {"tracking_uri": "sqlite:///x.db", "experiment": "e", "use_ray": True, "eval_envs": 3,
                "sweep": "s", "data": {"data_dir": "/d", "cache_dir": "/c"}}
    )  # fmt: skip
    assert changed.run_id == spec.run_id
    assert RunSpec.from_dict(BASE | {"chunk_size": 7}).run_id != spec.run_id


@pytest.mark.parametrize(
    ("task", "canonical"),
    [
        ("cube-single-play:3", "cube-single-play-singletask-task3-v0"),
        ("cube-single-play:default", "cube-single-play-singletask-task2-v0"),
        ("puzzle-3x3-play-singletask-task4-v0", "puzzle-3x3-play-singletask-task4-v0"),
    ],
)
def test_a_task_selector_naming_one_task_selects_it(task: str, canonical: str) -> None:
    assert RunSpec.from_dict(BASE | {"task": task}).task == canonical


def test_a_task_selector_naming_several_tasks_points_to_a_sweep() -> None:
    with pytest.raises(RunSpecError, match="'cube-single-play' names 5 tasks, and a run trains on one"):
        RunSpec.from_dict(BASE | {"task": "cube-single-play"})


def test_runs_at_the_default_task_options_keep_the_run_ids_they_had_before_the_options_existed() -> None:
    # The ids were computed at commit 233d419, before action_chunk, start_training, sparse_reward and
    # success_timing were run fields.
    assert RunSpec.from_dict(BASE).run_id == "fql-scene-play-task2-s0-42a41cf6"
    o2o = {"algo": "fql", "task": "puzzle-3x3-play-singletask-v0", "online_steps": 1_000_000}
    assert RunSpec.from_dict(o2o | {"hyperparameters": {"alpha": 30}}).run_id == "fql-puzzle-3x3-play-task4-s0-1f4a68cb"
    online = {"algo": "rlpd", "task": "cube-double-play-singletask-v0", "offline_steps": 0, "online_steps": 1_000_000}
    assert RunSpec.from_dict(online).run_id == "rlpd-cube-double-play-task2-s0-0106501b"
    spec = RunSpec.from_dict(BASE)
    assert identity_of({k: v for k, v in spec.to_dict().items() if k not in NEUTRAL_IDENTITY}) == spec.identity()


def test_single_actions_given_explicitly_are_the_same_run() -> None:
    explicit = RunSpec.from_dict(BASE | {"action_chunk": 1, "start_training": 0})
    assert explicit.run_id == RunSpec.from_dict(BASE).run_id
    assert explicit.algo_config() == RunSpec.from_dict(BASE).algo_config()


def test_a_chunked_run_is_another_run() -> None:
    assert RunSpec.from_dict(BASE | {"action_chunk": 5}).run_id != RunSpec.from_dict(BASE).run_id


def test_a_learner_that_cannot_chunk_refuses_chunks_before_any_work() -> None:
    with pytest.raises(RunSpecError, match=r"iql cannot act in chunks \(action_chunk 5\).*fql"):
        RunSpec.from_dict(BASE | {"algo": "iql", "action_chunk": 5})


def test_action_chunk_as_a_hyperparameter_points_to_the_run_setting() -> None:
    with pytest.raises(RunSpecError, match="action_chunk is a run setting, not a hyperparameter"):
        RunSpec.from_dict(BASE | {"hyperparameters": {"action_chunk": 5}})


@pytest.mark.parametrize("options", [{"sparse_reward": True}, {"success_timing": "pre"}, {"success_timing": "post"}])
def test_a_task_option_away_from_its_default_is_another_run(options: dict) -> None:
    assert RunSpec.from_dict(BASE | options).run_id != RunSpec.from_dict(BASE).run_id


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"task": "cube-single-play-singletask-v0", "sparse_reward": True},
            "sparse_reward changes nothing on cube-single-play-singletask-task2-v0: its OGBench reward is already "
            "success - 1",
        ),
        (
            {"task": "antmaze-large-navigate-singletask-v0", "sparse_reward": True},
            "sparse_reward changes nothing on antmaze-large-navigate-singletask-task1-v0",
        ),
        (
            {"success_timing": "post", "eval_episodes": 0},
            "success_timing 'post' changes nothing in this run: it steps no environment",
        ),
        ({"success_timing": "later"}, "success_timing must be one of default, pre, post, got 'later'"),
        ({"sparse_reward": "yes"}, "sparse_reward must be true or false"),
    ],
)
def test_task_options_that_make_no_sense_are_refused_before_any_work(values: dict, message: str) -> None:
    with pytest.raises(RunSpecError) as error:
        RunSpec.from_dict(BASE | values)
    assert message in str(error.value)


def test_a_success_timing_is_refused_on_an_ogbench_without_the_option(monkeypatch) -> None:
    monkeypatch.setattr(options, "installed_ogbench", lambda: "1.1.2")  # QC's pin; such an ogbench is not installed
    with pytest.raises(RunSpecError, match=r"'post' needs ogbench >= 1\.2\.0.*installed ogbench 1\.1\.2"):
        RunSpec.from_dict(BASE | {"success_timing": "post"})
    assert RunSpec.from_dict(BASE).success_timing == "default"  # the defaults stay valid there
