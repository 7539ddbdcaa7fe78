"""RunSpec: a validated description of one run (one algorithm, one task, one seed).

Defaults follow the FQL paper's protocol (docs/algorithms.md#run-protocol): 1M offline gradient steps,
evaluation every 100K steps with 50 episodes; offline-to-online adds 1M environment steps with one update
per step and online transitions appended to the replay buffer (capacity max(2M, |D| + 1)).
Bad input fails here, before any work, with a message that names the field and what it accepts.

Every field declares its role: *identity* fields determine the results and are hashed into the run id;
*execution* fields say where and how the run executes (output directory, MLflow, evaluation workers) and can
change between attempts of the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from flowsteer.algorithms.registry import ALGORITHMS, check_action_chunk, check_run, make_config
from flowsteer.datasets.catalog import parse_task, single_task
from flowsteer.datasets.errors import DatasetError
from flowsteer.datasets.generate import SIZES
from flowsteer.datasets.options import SuccessTiming, TaskOptions, check_options
from flowsteer.policies.serving import Serving
from flowsteer.rundir import schedule
from flowsteer.trackinguri import CredentialsInUriError, check_no_password, resolve_tracking_uri
from flowsteer.validation import InputModel, did_you_mean, first_error

Role = Literal["identity", "execution"]
# Upper bounds that catch typos (1e30 steps) before any work; each far above any protocol in the papers.
MAX_EPISODES = 100_000  # evaluation episodes, generated dataset episodes
MAX_EPISODE_STEPS = 100_000
MAX_WORKERS = 1_024  # rollout workers, environments per worker


class RunSpecError(ValueError):
    """A RunSpec field has a value the platform cannot run; the message names the field and the fix."""


def _field(role: Role, default: Any, description: str, **bounds: Any) -> Any:
    """A field that declares whether it determines the run's results (identity) or only where and how the run
    executes (execution); the run id hashes the identity fields and nothing else."""
    return Field(default, description=description, json_schema_extra={"role": role}, **bounds)


def identity(default: Any, description: str, **bounds: Any) -> Any:
    return _field("identity", default, description, **bounds)


def execution(default: Any, description: str, **bounds: Any) -> Any:
    return _field("execution", default, description, **bounds)


def role_of(field: FieldInfo) -> Role:
    extra = field.json_schema_extra
    return extra["role"] if isinstance(extra, dict) else None  # type: ignore[return-value]


class DataSpec(InputModel):
    """Which copy of the task's dataset to use (see flowsteer.datasets.store.resolve)."""

    label: ClassVar[str] = "data field"
    source: Literal["auto", "official", "generated"] = identity("auto", "'auto' (official files first), "
                                                                "'official' or 'generated'")  # fmt: skip
    episodes: int = identity(SIZES["official"], "training episodes of a generated copy", ge=1, le=MAX_EPISODES)
    seed: int = identity(0, "generation seed of a generated copy", ge=0)
    episode_steps: int = identity(1001, "rows per episode of a generated copy", ge=2, le=MAX_EPISODE_STEPS)
    data_dir: str | None = execution(None, "directory of official files (default: $FLOWSTEER_OGBENCH_DIR, "
                                     "~/.ogbench/data)")  # fmt: skip
    cache_dir: str | None = execution(None, "cache of generated datasets (default: $FLOWSTEER_CACHE_DIR, "
                                      "~/.cache/flowsteer)")  # fmt: skip


class RunSpec(InputModel):
    """One run. Each field says whether it is part of the run's identity; `from_dict` checks everything."""

    label: ClassVar[str] = "run field"
    algo: str = identity(..., "one of flowsteer.algorithms.registry.ALGORITHMS")
    task: str = identity(..., "OGBench single task, or a selector naming one (cube-single-play:3); stored canonical")
    seed: int = identity(0, "seeds the learner, evaluation and online collection", ge=0, le=schedule.MAX_SEED)
    hyperparameters: dict[str, Any] = identity({}, "overrides of the paper's presets")
    offline_steps: int = identity(1_000_000, "gradient steps on the dataset (FQL paper)", ge=0,
                                  le=schedule.MAX_UPDATES)  # fmt: skip
    online_steps: int = identity(0, "environment steps after the offline phase (FQL paper o2o: 1_000_000)", ge=0,
                                 le=schedule.MAX_UPDATES)  # fmt: skip
    utd: int = identity(1, "updates per online environment step", ge=1, le=schedule.MAX_UPDATES)
    buffer_size: int = identity(2_000_000, "online replay capacity: max(buffer_size, |D| + 1); with balanced "
                                "sampling (rlpd, calql) buffer_size online rows besides the dataset", ge=1,
                                le=schedule.MAX_UPDATES)  # fmt: skip
    start_training: int = identity(0, "online steps collected before the first online update (QC and QAM: 5,000); "
                                   "0: update from the first step, as FQL", ge=0,
                                   le=schedule.MAX_UPDATES)  # fmt: skip
    eval_interval: int = identity(100_000, "steps between evaluations (offline steps, then env steps)", ge=1)
    eval_episodes: int = identity(50, "evaluation episodes", ge=0, le=MAX_EPISODES)
    log_interval: int = identity(5_000, "steps between rows of train.csv", ge=1)
    checkpoint_interval: int = identity(100_000, "steps between checkpoints (online: at the next episode end)", ge=1)
    action_chunk: int = identity(1, "H: actions per policy call, executed open loop (Q-chunking); learners train on "
                                 "H-step chunks with n-step targets. 1: single steps", ge=1, le=1_000)  # fmt: skip
    chunk_size: int = identity(1_000, "offline updates per compiled dispatch (lax.scan)", ge=1)
    data: DataSpec = identity(DataSpec(), "which copy of the dataset (data_dir and cache_dir: execution only)")
    sparse_reward: bool = identity(False, "QC/QAM --sparse: r <- -1·[r != 0] on the dataset, online and in evaluation "
                                   "(success - 1); masks unchanged. For scene, puzzle, cube-double+")  # fmt: skip
    success_timing: SuccessTiming = identity("default", "when OGBench computes reward and success: 'pre' (before "
                                             "the action), 'post' (after; ogbench < 1.2, QC, FQL) or 'default' (the "
                                             "installed ogbench's: 1.2.2 'pre')")  # fmt: skip
    setting: Literal["offline", "offline-to-online"] = identity("offline", "which presets apply; set from "
                                                               "online_steps")  # fmt: skip
    eval_workers: int = execution(1, "rollout workers evaluating in parallel (Ray actors when > 1)", ge=1,
                                  le=MAX_WORKERS)  # fmt: skip
    eval_envs: int = execution(10, "environments stepped together per worker, one batched policy call per step",
                               ge=1, le=MAX_WORKERS)  # fmt: skip
    output_dir: str = execution(
        "runs", "run directories go to output_dir/<run_id> (made absolute)", validate_default=True
    )
    tracking_uri: str | None = execution(None, "MLflow; default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db")
    experiment: str = execution("flowsteer", "MLflow experiment name")
    use_ray: bool = execution(False, "evaluate on Ray actors (also when eval_workers > 1)")
    base_device: str = execution("cpu", "device of an external base policy (hyperparameter base_policy): 'cpu', "
                                 "'cuda' or 'cuda:N'", pattern=r"^(cpu|cuda(:\d+)?)$")  # fmt: skip
    base_serving: Serving = execution("process", "where an external base policy runs: 'process' (a copy in each "
                                      "acting process), 'node' (one Ray actor per node) or 'gpu' (one per "
                                      "GPU)")  # fmt: skip
    sweep: str | None = execution(None, "the sweep this run belongs to (an MLflow tag)")

    # ------------------------------------------------------------------ construction and validation

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        """Build and validate from plain data (JSON, YAML, CLI) or raise RunSpecError naming the field."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise RunSpecError(first_error(exc, cls)) from None

    @model_validator(mode="before")
    @classmethod
    def _setting_from_schedule(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("online_steps", 0), int):
            values = dict(values) | {"setting": "offline-to-online" if values.get("online_steps", 0) > 0 else "offline"}
        return values

    @field_validator("algo")
    @classmethod
    def _known_algorithm(cls, algo: str) -> str:
        if algo not in ALGORITHMS:
            raise ValueError(
                f"algo {algo!r} is unknown.{did_you_mean(algo, ALGORITHMS)} Valid: {', '.join(ALGORITHMS)}."
            )
        return algo

    @field_validator("task")
    @classmethod
    def _canonical_task(cls, task: str) -> str:
        try:
            return single_task(task)
        except DatasetError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("hyperparameters")
    @classmethod
    def _absolute_base_paths(cls, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        # DSRL's base_run and base_policy: Ray trials change directory, keep them absolute
        paths = {k: v for k, v in hyperparameters.items() if k in ("base_run", "base_policy") and isinstance(v, str)}
        return hyperparameters | {k: str(Path(v).expanduser().absolute()) for k, v in paths.items()}

    @field_validator("output_dir")
    @classmethod
    def _absolute_output_dir(cls, output_dir: str) -> str:
        if not output_dir:
            raise ValueError(f"output_dir must be a directory name, got {output_dir!r}.")
        return str(Path(output_dir).expanduser().absolute())  # the same run from any directory

    @field_validator("tracking_uri")
    @classmethod
    def _no_password(cls, uri: str | None) -> str | None:
        if uri is not None:
            _check_no_password(uri, "tracking_uri")
        return uri

    @model_validator(mode="after")
    def _schedule_and_algorithm(self) -> RunSpec:
        if self.offline_steps + self.online_steps == 0:
            raise ValueError("offline_steps and online_steps are both 0: the run would do nothing.")
        updates = self.offline_steps + self.online_steps * self.utd
        if updates > schedule.MAX_UPDATES:
            raise ValueError(
                f"offline_steps + online_steps x utd is {updates:,} updates; learners count updates in 32 bits, "
                f"so at most {schedule.MAX_UPDATES:,}."
            )
        evaluations = schedule.count_evaluations(self.eval_interval, self.offline_steps, self.online_steps)
        if evaluations > schedule.MAX_EVALUATIONS:
            least = -(-(self.offline_steps + self.online_steps) // schedule.MAX_EVALUATIONS)  # ceiling
            while schedule.count_evaluations(least, self.offline_steps, self.online_steps) > schedule.MAX_EVALUATIONS:
                least += 1  # the phase ends may add one or two
            raise ValueError(
                f"eval_interval {self.eval_interval:,} schedules {evaluations:,} evaluations; at most "
                f"{schedule.MAX_EVALUATIONS:,} are allowed: raise eval_interval to {least:,} or more."
            )
        check_options(parse_task(self.task), self.task_options())
        if self.start_training > 0 and self.start_training >= self.online_steps:
            raise ValueError(
                f"start_training {self.start_training:,} leaves no online step that updates (online_steps "
                f"{self.online_steps:,}): set it below online_steps, or to 0."
            )
        if self.success_timing != "default" and self.online_steps == 0 and self.eval_episodes == 0:
            raise ValueError(
                f"success_timing {self.success_timing!r} changes nothing in this run: it steps no environment "
                f"(online_steps 0, eval_episodes 0) and datasets do not depend on it. Leave success_timing at "
                f"'default', or evaluate (eval_episodes > 0)."
            )
        try:
            check_action_chunk(self.algo, self.action_chunk)
        except ValueError as exc:
            raise ValueError(f"action_chunk: {exc}") from None
        try:
            config = self.algo_config()
            check_run(self.algo, config, self.offline_steps, self.online_steps)  # e.g. DSRL needs a base policy
        except (ValueError, TypeError) as exc:
            raise ValueError(f"hyperparameters: {exc}") from None
        return self

    # ------------------------------------------------------------------ derived values

    def algo_config(self) -> Any:
        """The algorithm config: defaults, then the paper's presets for this task, then the overrides; a learning-
        rate schedule sized to a whole run spans this run's updates (offline_steps + online_steps x utd)."""
        updates = self.offline_steps + (self.online_steps - self.start_training) * self.utd
        return make_config(
            self.algo, self.task, self.hyperparameters, self.setting, updates=updates, action_chunk=self.action_chunk
        )

    def task_options(self) -> TaskOptions:
        """The task options its data and every environment of the run get alike (flowsteer.datasets.options)."""
        return TaskOptions(self.sparse_reward, self.success_timing)

    def identity(self) -> dict[str, Any]:
        """What determines the run's results (not where they are written or tracked)."""
        return identity_of(self.to_dict())

    @property
    def run_id(self) -> str:
        """Stable id: the same identity gives the same id, so reruns find and resume their directory."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()
        short_task = self.task.replace("-singletask", "").replace("-v0", "")
        return f"{self.algo}-{short_task}-s{self.seed}-{digest[:8]}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_id

    def resolved_tracking_uri(self) -> str:
        """MLflow URI with an absolute path: Ray workers change directory, relative sqlite paths would break."""
        if self.tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI"):
            _check_no_password(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
        return resolve_tracking_uri(self.tracking_uri, Path.cwd())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def replace(self, **changes: Any) -> RunSpec:
        """A validated copy with ``changes`` (``data`` changes merge into the data settings)."""
        values = self.to_dict() | changes
        values["data"] = self.data.model_dump() | changes.get("data", {})
        return RunSpec.from_dict(values)


def _check_no_password(uri: str, where: str) -> None:
    try:
        check_no_password(uri, where)
    except CredentialsInUriError as exc:
        raise RunSpecError(str(exc)) from None


# Identity fields added after runs were made, at the value that computes what runs computed before them: left out of
# the identity there, so the run ids (and run directories) of earlier runs stay theirs.
NEUTRAL_IDENTITY: dict[str, Any] = {
    "action_chunk": 1,
    "sparse_reward": False,
    "success_timing": "default",
    "start_training": 0,
}


def identity_of(run: dict[str, Any]) -> dict[str, Any]:
    """The identity part of a run's fields (a RunSpec as plain data): what determines its results. Fields at
    their NEUTRAL_IDENTITY value are left out."""
    ident = {k: v for k, v in run.items() if k in _IDENTITY and not _neutral(k, v)}
    if isinstance(ident.get("data"), dict):
        ident["data"] = {k: v for k, v in ident["data"].items() if k in _DATA_IDENTITY}
    return ident


def _neutral(key: str, value: Any) -> bool:
    return key in NEUTRAL_IDENTITY and value == NEUTRAL_IDENTITY[key]


def without_neutral(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (an algorithm config, say) without the keys at their NEUTRAL_IDENTITY value."""
    return {k: v for k, v in values.items() if not _neutral(k, v)}


_IDENTITY = [name for name, f in RunSpec.model_fields.items() if role_of(f) == "identity"]
_DATA_IDENTITY = [name for name, f in DataSpec.model_fields.items() if role_of(f) == "identity"]
