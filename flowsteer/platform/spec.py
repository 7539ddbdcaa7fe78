"""RunSpec: a validated description of one run (one algorithm, one task, one seed).

Defaults follow the FQL paper's protocol (shared/spec/algorithms.md §12): 1M offline gradient steps,
evaluation every 100K steps with 50 episodes; offline-to-online adds 1M environment steps with one update
per step and online transitions appended to the replay buffer (capacity max(2M, |D| + 1)).
Bad input fails here, before any work, with a message that names the field and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsteer.algorithms.registry import ALGORITHMS, check_run, make_config
from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.errors import DatasetError
from flowsteer.datasets.generate import SIZES
from flowsteer.rundir import schedule
from flowsteer.trackinguri import CredentialsInUriError, check_no_password

SOURCES = ("auto", "official", "generated")
# Where and how a run executes: not part of its identity (see identity_of).
EXECUTION_FIELDS = ("output_dir", "tracking_uri", "experiment", "use_ray", "eval_workers", "eval_envs", "sweep")
EXECUTION_DATA_FIELDS = ("data_dir", "cache_dir")
# Upper bounds that catch typos (1e30 steps) before any work; each far above any protocol in the papers.
MAX_EPISODES = 100_000  # evaluation episodes, generated dataset episodes
MAX_EPISODE_STEPS = 100_000
MAX_WORKERS = 1_024  # rollout workers, environments per worker


class RunSpecError(ValueError):
    """A RunSpec field has a value the platform cannot run; the message names the field and the fix."""


@dataclass(frozen=True)
class DataSpec:
    """Which copy of the task's dataset to use (see flowsteer.datasets.store.resolve)."""

    source: str = "auto"  # 'auto' (official files first), 'official' or 'generated'
    episodes: int = SIZES["official"]  # training episodes of a generated copy
    seed: int = 0  # generation seed of a generated copy
    episode_steps: int = 1001  # rows per episode of a generated copy
    data_dir: str | None = None  # directory of official files (default: $FLOWSTEER_OGBENCH_DIR, ~/.ogbench/data)
    cache_dir: str | None = None  # cache of generated datasets (default: $FLOWSTEER_CACHE_DIR, ~/.cache/flowsteer)


@dataclass(frozen=True)
class RunSpec:
    """One run. Field comments give the defaults' source; `validate()` checks everything."""

    algo: str  # one of flowsteer.algorithms.registry.ALGORITHMS
    task: str  # OGBench single-task name; stored canonical (with -taskN)
    seed: int = 0  # seeds the learner, evaluation and online collection
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # overrides of the paper's presets
    offline_steps: int = 1_000_000  # gradient steps on the dataset (FQL paper)
    online_steps: int = 0  # environment steps after the offline phase (FQL paper o2o: 1_000_000)
    utd: int = 1  # updates per online environment step
    buffer_size: int = 2_000_000  # replay capacity in the online phase: max(buffer_size, |D| + 1)
    eval_interval: int = 100_000  # steps between evaluations (offline steps, then env steps)
    eval_episodes: int = 50  # evaluation episodes
    eval_workers: int = 1  # rollout workers evaluating in parallel (Ray actors when > 1)
    eval_envs: int = 10  # environments stepped together per worker, one batched policy call per step
    log_interval: int = 5_000  # steps between rows of train.csv
    checkpoint_interval: int = 100_000  # steps between checkpoints (online: at the next episode end)
    chunk_size: int = 1_000  # offline updates per compiled dispatch (lax.scan)
    data: DataSpec = field(default_factory=DataSpec)
    output_dir: str = "runs"  # run directories go to output_dir/<run_id>
    tracking_uri: str | None = None  # MLflow; default $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    experiment: str = "flowsteer"  # MLflow experiment name
    use_ray: bool = False  # evaluate on Ray actors (also when eval_workers > 1); the learner stays in-process
    sweep: str | None = None  # the sweep this run belongs to (an MLflow tag; not part of the run's identity)
    setting: str = "offline"  # which presets apply: 'offline' or 'offline-to-online' (set from online_steps)

    # ------------------------------------------------------------------ construction and validation

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        """Build and validate from plain data (JSON, YAML, CLI); unknown fields are named with suggestions."""
        values = dict(values)
        _reject_unknown("run field", values, [f.name for f in dataclasses.fields(cls)])
        data = values.pop("data", {}) or {}
        if isinstance(data, DataSpec):
            data = dataclasses.asdict(data)
        if not isinstance(data, dict):
            raise RunSpecError(f"data must be a mapping of {[f.name for f in dataclasses.fields(DataSpec)]}")
        _reject_unknown("data field", data, [f.name for f in dataclasses.fields(DataSpec)])
        return cls(**values, data=DataSpec(**data)).validate()

    def validate(self) -> RunSpec:
        """Return a canonical copy (task with -taskN, setting from online_steps) or raise RunSpecError."""
        if self.algo not in ALGORITHMS:
            close = difflib.get_close_matches(str(self.algo), list(ALGORITHMS), n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise RunSpecError(f"algo {self.algo!r} is unknown.{hint} Valid: {', '.join(ALGORITHMS)}.")
        try:
            task = parse_task(str(self.task)).name
        except DatasetError as exc:
            raise RunSpecError(f"task: {exc}") from None
        for name, minimum, maximum in [
            ("seed", 0, schedule.MAX_SEED),
            ("offline_steps", 0, schedule.MAX_UPDATES),
            ("online_steps", 0, schedule.MAX_UPDATES),
            ("utd", 1, schedule.MAX_UPDATES),
            ("buffer_size", 1, schedule.MAX_UPDATES),
            ("eval_interval", 1, None),
            ("eval_episodes", 0, MAX_EPISODES),
            ("eval_workers", 1, MAX_WORKERS),
            ("eval_envs", 1, MAX_WORKERS),
            ("log_interval", 1, None),
            ("checkpoint_interval", 1, None),
            ("chunk_size", 1, None),
        ]:
            _check_int(name, getattr(self, name), minimum, maximum)
        if self.offline_steps + self.online_steps == 0:
            raise RunSpecError("offline_steps and online_steps are both 0: the run would do nothing.")
        updates = self.offline_steps + self.online_steps * self.utd
        if updates > schedule.MAX_UPDATES:
            raise RunSpecError(
                f"offline_steps + online_steps x utd is {updates:,} updates; learners count updates in 32 bits, "
                f"so at most {schedule.MAX_UPDATES:,}."
            )
        evaluations = schedule.count_evaluations(self.eval_interval, self.offline_steps, self.online_steps)
        if evaluations > schedule.MAX_EVALUATIONS:
            least = -(-(self.offline_steps + self.online_steps) // schedule.MAX_EVALUATIONS)  # ceiling
            while schedule.count_evaluations(least, self.offline_steps, self.online_steps) > schedule.MAX_EVALUATIONS:
                least += 1  # the phase ends may add one or two
            raise RunSpecError(
                f"eval_interval {self.eval_interval:,} schedules {evaluations:,} evaluations; at most "
                f"{schedule.MAX_EVALUATIONS:,} are allowed: raise eval_interval to {least:,} or more."
            )
        if self.data.source not in SOURCES:
            raise RunSpecError(f"data.source must be one of {', '.join(SOURCES)}, got {self.data.source!r}.")
        for name, minimum, maximum in [("episodes", 1, MAX_EPISODES), ("seed", 0, None),
                                       ("episode_steps", 2, MAX_EPISODE_STEPS)]:  # fmt: skip
            _check_int(f"data.{name}", getattr(self.data, name), minimum, maximum)
        if not isinstance(self.hyperparameters, dict):
            raise RunSpecError(f"hyperparameters must be a mapping, got {type(self.hyperparameters).__name__}.")
        setting = "offline-to-online" if self.online_steps > 0 else "offline"
        hyperparameters = dict(self.hyperparameters)
        if isinstance(hyperparameters.get("base_run"), str):  # DSRL: Ray trials change directory, keep it absolute
            hyperparameters["base_run"] = str(Path(hyperparameters["base_run"]).expanduser().absolute())
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise RunSpecError(f"output_dir must be a directory name, got {self.output_dir!r}.")
        output_dir = str(Path(self.output_dir).expanduser().absolute())  # the same run from any directory
        if self.tracking_uri is not None:
            if not isinstance(self.tracking_uri, str):
                raise RunSpecError(f"tracking_uri must be a string (an MLflow URI), got {self.tracking_uri!r}.")
            _check_no_password(self.tracking_uri, "tracking_uri")
        canonical = dataclasses.replace(
            self, task=task, setting=setting, hyperparameters=hyperparameters, output_dir=output_dir
        )
        try:
            config = canonical.algo_config()
            check_run(self.algo, config, self.offline_steps, self.online_steps)  # e.g. DSRL: a base must exist
        except (ValueError, TypeError) as exc:
            raise RunSpecError(f"hyperparameters: {exc}") from None
        return canonical

    # ------------------------------------------------------------------ derived values

    def algo_config(self) -> Any:
        """The algorithm config: defaults, then the paper's presets for this task, then the overrides."""
        return make_config(self.algo, self.task, self.hyperparameters, self.setting)

    def identity(self) -> dict[str, Any]:
        """What determines the run's results (not where they are written or tracked)."""
        return identity_of(dataclasses.asdict(self))

    @property
    def run_id(self) -> str:
        """Stable id: the same spec gives the same id, so reruns find and resume their directory."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()
        short_task = self.task.replace("-singletask", "").replace("-v0", "")
        return f"{self.algo}-{short_task}-s{self.seed}-{digest[:8]}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser().absolute() / self.run_id

    def resolved_tracking_uri(self) -> str:
        """MLflow URI with an absolute path: Ray workers change directory, relative sqlite paths would break."""
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            _check_no_password(uri, "tracking_uri" if self.tracking_uri else "MLFLOW_TRACKING_URI")
        if not uri:
            return f"sqlite:///{Path.cwd().absolute() / 'mlflow.db'}"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return f"sqlite:///{Path(uri[len('sqlite:///') :]).absolute()}"
        return uri

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_no_password(uri: str, where: str) -> None:
    try:
        check_no_password(uri, where)
    except CredentialsInUriError as exc:
        raise RunSpecError(str(exc)) from None


def identity_of(run: dict[str, Any]) -> dict[str, Any]:
    """The identity part of a run's fields (a RunSpec as plain data): what determines its results."""
    ident = {k: v for k, v in run.items() if k not in EXECUTION_FIELDS}
    ident["data"] = {k: v for k, v in (run.get("data") or {}).items() if k not in EXECUTION_DATA_FIELDS}
    return ident


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RunSpecError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise RunSpecError(f"{name} must be at most {maximum:,}, got {value:,}.")


def _reject_unknown(kind: str, values: dict[str, Any], valid: list[str]) -> None:
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise RunSpecError(f"unknown {kind} {key!r}.{hint} Valid: {', '.join(valid)}.")
