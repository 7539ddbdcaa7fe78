"""SweepSpec: a validated sweep file (YAML).

A sweep names algorithms (each with fixed hyperparameters and a grid or a search space), tasks, seeds, the
run settings every trial shares, resources per trial and where results go. A grid may sweep run settings too
(``grid: {action_chunk: [1, 5]}``), and an entry of ``tasks`` may be a mapping that gives its tasks their own run
settings and hyperparameters (``{select: scene-play:default, run: {sparse_reward: true}}``). The file is a pydantic
model: everything is checked here, before Ray starts, and a bad file fails with a message that names the field
(``algorithms.fql.grid.alpha``) and what it accepts. ``flowsteer sweep --schema`` prints its JSON Schema
(docs/sweep.schema.json) for editors. See examples/*.yaml for annotated files.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from flowsteer.algorithms.registry import ALGORITHMS, CHUNK_FIELD, hyperparameter_names
from flowsteer.datasets.catalog import GROUPS, SELECTOR_HELP, DatasetInfo, parse_task, select_tasks
from flowsteer.datasets.errors import DatasetError
from flowsteer.platform.spec import DataSpec, RunSpec, RunSpecError
from flowsteer.rundir import schedule
from flowsteer.trackinguri import CredentialsInUriError, check_no_password, resolve_tracking_uri
from flowsteer.validation import InputModel, did_you_mean, first_error
from flowsteer.yamlfile import YamlInputError, read_yaml

__all__ = ["GROUPS", "SweepSpec", "SweepSpecError", "load_sweep", "parse_sweep", "sweep_schema"]

SCORED_EVALUATIONS = 3  # a trial's score averages its last 3 evaluations, as the report's cells (the papers' rule)

MODES = ("grid", "tune-then-broadcast", "optuna")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# RunSpec fields a sweep sets itself (per trial, or from its own top-level keys).
TRIAL_FIELDS = (
    "algo",
    "task",
    "seed",
    "hyperparameters",
    "output_dir",
    "tracking_uri",
    "experiment",
    "sweep",
    "setting",
)

# Run settings every trial of a sweep shares, so an algorithm's own `run` may not change them.
SHARED_RUN_FIELDS = ("data", "eval_workers", "use_ray", "base_device", "base_serving")


class SweepSpecError(ValueError):
    """The sweep file cannot be run; the message names the field and what it accepts."""


class Distribution(InputModel):
    """One search distribution of mode optuna: exactly one of its keys, e.g. {loguniform: [1e-4, 1e-2]}."""

    label: ClassVar[str] = "distribution"
    uniform: list[float] | None = None
    loguniform: list[float] | None = None
    randint: list[int] | None = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_distribution(self) -> Distribution:
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f" must be one of {{{': [...]}, {'.join(DISTRIBUTIONS)}: [...]}}, got {given or 'none'}.")
        kind = given[0]
        args = getattr(self, kind)
        if kind == "choice":
            return self
        if len(args) != 2 or not all(math.isfinite(a) for a in args) or not args[0] < args[1]:
            raise ValueError(f".{kind} must be [low, high] with low < high, got {args!r}.")
        if kind == "loguniform" and args[0] <= 0:
            raise ValueError(f".loguniform needs low > 0, got {args[0]!r}.")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def args(self) -> list[Any]:
        return getattr(self, self.kind)


class AlgorithmSweep(InputModel):
    """One algorithm of a sweep: fixed overrides, plus a grid (grid modes) or a search space (optuna)."""

    label: ClassVar[str] = "field of an algorithm"
    name: str = Field("", description="set from the key of algorithms:", json_schema_extra={"readOnly": True})
    hyperparameters: dict[str, Any] = Field({}, description="applied to every trial")
    grid: dict[str, list[Any]] = Field({}, description="cartesian product; empty: one point")
    search: dict[str, Distribution] = Field({}, description="mode optuna: name -> {distribution: args}")
    run: dict[str, Any] = Field(
        {}, description="run settings of this algorithm's trials, over the sweep's run (rlpd: {offline_steps: 0})"
    )

    @field_validator("run", mode="before")
    @classmethod
    def _own_run_settings(cls, raw: Any) -> Any:
        return _own_run_settings(raw)

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f".{key} must be a non-empty list of values, got [].")
            for i, value in enumerate(values):
                same = [other for other in values[:i] if _same_value(other, value)]
                if same:  # 10 and 10.0 would be two trials of one setting, under two ids
                    raise ValueError(f".{key} lists one value twice ({same[0]!r} and {value!r}); list each once.")
        return grid

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid, each merged over the fixed hyperparameters; a point may hold run
        settings too (a grid over action_chunk), which ``split_point`` separates."""
        names = list(self.grid)
        return [self.hyperparameters | dict(zip(names, values, strict=True)) for values in _product(self.grid)]

    def run_axes(self) -> list[str]:
        """The grid's names that are run settings rather than hyperparameters."""
        return [name for name in self.grid if is_run_axis(self.name, name)]


class TaskSettings(InputModel):
    """An entry of tasks that is a mapping: its tasks with their own run settings and hyperparameters (a protocol's
    per-domain values: sparse rewards on scene and puzzle, H = 1 on locomotion, FQL's alpha per domain)."""

    label: ClassVar[str] = "field of a task entry"
    select: str | list[str] = Field(..., description="task selectors, as the plain entries of tasks take them")
    run: dict[str, Any] = Field({}, description="run settings of these tasks' trials, over the sweep's run")
    hyperparameters: dict[str, dict[str, Any]] = Field(
        {}, description="per algorithm, overrides on these tasks (fql: {alpha: 300})"
    )

    @field_validator("select")
    @classmethod
    def _selectors(cls, select: str | list[str]) -> str | list[str]:
        if not select or (isinstance(select, list) and not all(isinstance(s, str) and s for s in select)):
            raise ValueError(f"select must be a task selector or a non-empty list of them, got {select!r}.")
        return select

    @field_validator("run", mode="before")
    @classmethod
    def _own_run_settings(cls, raw: Any) -> Any:
        return _own_run_settings(raw)

    @property
    def selectors(self) -> list[str]:
        return [self.select] if isinstance(self.select, str) else list(self.select)


class Resources(InputModel):
    label: ClassVar[str] = "field of resources"
    cpu: float = Field(
        1.0,
        gt=0,
        description="CPUs reserved per trial (the learner and in-process evaluation; a seed group's seeds share them)",
    )
    gpu: float = Field(
        0.0,
        description="GPUs per trial (a seed group's seeds share them); a fraction shares a GPU, "
        "and JAX's memory fraction matches",
    )

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_share(cls, gpu: Any) -> Any:
        number = isinstance(gpu, int | float) and not isinstance(gpu, bool) and math.isfinite(gpu)
        if not number or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
            raise ValueError(f"gpu must be 0, a fraction in (0, 1] or a whole number, got {gpu!r}.")
        return float(gpu)

    def as_ray(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu} if self.gpu else {"cpu": self.cpu}

    def jax_memory_fraction(self) -> float | None:
        """A little under the Ray fraction, so co-located trials' JAX pools never add up to more than the GPU."""
        return None if self.gpu <= 0 else round(min(self.gpu, 1.0) * 0.9, 3)


class OptunaSettings(InputModel):
    label: ClassVar[str] = "field of optuna"
    suggestions: int = Field(
        8, ge=1, description="settings Optuna proposes per (algorithm, task); each runs every seed"
    )
    seed: int = Field(0, ge=0, description="the sampler's seed")
    max_concurrent: int = Field(0, ge=0, description="settings evaluated at once (0: no limit beyond the cluster)")


class ReportSettings(InputModel):
    label: ClassVar[str] = "field of report"
    layouts: list[str] = Field(["task", "published"], description="task, category, published")
    formats: list[str] = Field(["csv", "latex", "md"], description="csv, latex, md")
    stats: bool = Field(False, description="IQM and mean with bootstrap CIs, profiles, P(X > Y)")
    plots: bool = Field(False, description="learning curves (and profiles with stats)")
    caption: str = Field("", description="opens every table's caption (say what a reduced protocol reduced)")
    published: str = Field(
        "auto",
        description="the protocol of the published numbers: fql (FQL and DSRL papers), qc, qam; auto: fql "
        "unless runs act in chunks or learn from sparse rewards",
    )

    @field_validator("published")
    @classmethod
    def _protocol(cls, chosen: str) -> str:
        from flowsteer.reports.published import CHOICES

        if chosen not in CHOICES:
            raise ValueError(f"published must be one of {', '.join(CHOICES)}, got {chosen!r}.")
        return chosen

    @field_validator("layouts", "formats")
    @classmethod
    def _known(cls, chosen: list[str], info: Any) -> list[str]:
        from flowsteer.reports.tables import LAYOUTS
        from flowsteer.reports.writers import FORMATS

        valid = LAYOUTS if info.field_name == "layouts" else FORMATS
        if not chosen or any(c not in valid for c in chosen):
            raise ValueError(f"{info.field_name} must be a non-empty list from {', '.join(valid)}, got {chosen!r}.")
        return chosen


# The run settings every trial shares: RunSpec's fields, less those the sweep sets per trial.
RunSettings = create_model(  # type: ignore[call-overload]
    "RunSettings",
    __base__=InputModel,
    __doc__="Run settings every trial shares (flowsteer train's fields, less those the sweep sets).",
    **{name: (f.annotation, f) for name, f in RunSpec.model_fields.items() if name not in TRIAL_FIELDS},
)
RunSettings.label = "field of run"
# Run settings a grid may sweep, or a task entry or an algorithm may set: all but the shared ones.
RUN_AXES = tuple(name for name in RunSettings.model_fields if name not in SHARED_RUN_FIELDS)


class SweepSpec(InputModel):
    """A whole sweep file, validated; ``trials`` in flowsteer.sweeps.trials expands it."""

    label: ClassVar[str] = "sweep field"
    name: str = Field(..., description="results go to storage/<name>/; default: the file's name")
    mode: Literal["grid", "tune-then-broadcast", "optuna"] = "grid"
    algorithms: tuple[AlgorithmSweep, ...] = Field(..., description="names, or name -> {hyperparameters, grid, search}")
    tasks: tuple[str, ...] = Field(
        ...,
        description=f"task selectors: {SELECTOR_HELP}; or a mapping with select, "
        "run and hyperparameters (per algorithm) for those tasks",
    )
    task_settings: dict[str, TaskSettings] = Field(
        {}, description="set from the mapping entries of tasks", json_schema_extra={"readOnly": True}
    )
    seeds: tuple[int, ...] = Field((0,), description="a count (seeds: 8 is 0..7) or a list of seeds")
    seeds_per_trial: int = Field(
        1,
        ge=1,
        description="seeds of one setting trained together in one program (one Ray Tune trial, sharing its "
        "resources); 1: one seed per trial, which measured faster on CPUs",
    )
    run: dict[str, Any] = Field({}, description="run settings every trial shares (see RunSettings)")
    resources: Resources = Resources()
    max_failures: int = Field(2, ge=0, description="retries of a failed trial (each from its last checkpoint)")
    max_concurrent_trials: int = Field(
        0,
        ge=0,
        description="Ray Tune trials at once (each a seed group with seeds_per_trial); 0: as many as the cluster fits",
    )
    storage: str = Field("sweeps", min_length=1, description="results go to storage/<name>/ (made absolute)")
    tracking_uri: str = Field(
        "", validate_default=True, description="MLflow; default $MLFLOW_TRACKING_URI, else storage/mlflow.db"
    )
    optuna: OptunaSettings = OptunaSettings()
    report: ReportSettings = ReportSettings()
    source: str | None = Field(None, description="the file it came from", json_schema_extra={"readOnly": True})

    # ------------------------------------------------------------------ normalisation and checks

    @field_validator("name")
    @classmethod
    def _word(cls, name: str) -> str:
        if not name or any(c in name for c in "/\\ ") or name.startswith("."):
            raise ValueError(f"name must be a non-empty word without spaces or slashes, got {name!r}.")
        return name

    @field_validator("algorithms", mode="before")
    @classmethod
    def _named_algorithms(cls, raw: Any) -> Any:
        if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
            raw = {a: {} for a in raw}
        if not isinstance(raw, dict) or not raw:
            raise ValueError(
                "algorithms must name at least one algorithm, as a list (algorithms: [bc, fql]) or a mapping "
                "(algorithms: {fql: {grid: {alpha: [3, 10]}}})."
            )
        out = []
        for algo, body in raw.items():
            if algo not in ALGORITHMS:
                valid = ", ".join(ALGORITHMS)
                raise ValueError(
                    f".{algo}: unknown algorithm {algo!r}.{did_you_mean(algo, ALGORITHMS)} Valid: {valid}."
                )
            body = body if body is not None else {}
            if not isinstance(body, dict):
                raise ValueError(f".{algo} must be a mapping with hyperparameters, grid or search, got {body!r}.")
            try:
                out.append(AlgorithmSweep.model_validate(body | {"name": algo}))
            except ValidationError as exc:
                raise ValueError(first_error(exc, AlgorithmSweep, f"algorithms.{algo}")) from None
        return tuple(out)

    @model_validator(mode="before")
    @classmethod
    def _task_entries(cls, raw: Any) -> Any:
        """Expand tasks into task names, and the mapping entries into task_settings (per task name)."""
        if not isinstance(raw, dict) or "tasks" not in raw:
            return raw
        if "task_settings" in raw:
            raise ValueError("task_settings is set from the entries of tasks: give a task entry as a mapping "
                             "{select: ..., run: {...}, hyperparameters: {algorithm: {...}}}.")  # fmt: skip
        entries = [raw["tasks"]] if isinstance(raw["tasks"], str | dict) else raw["tasks"]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"tasks must be a non-empty list; entries: {SELECTOR_HELP}.")
        tasks: list[str] = []
        settings: dict[str, TaskSettings] = {}
        named_by: dict[str, int] = {}
        for i, entry in enumerate(entries):
            where = f"tasks[{i}]"
            if isinstance(entry, dict):
                try:
                    entry_settings = TaskSettings.model_validate(entry)
                except ValidationError as exc:
                    raise ValueError(first_error(exc, TaskSettings, where)) from None
                selectors, where = entry_settings.selectors, f"{where}.select"
            elif isinstance(entry, str):
                entry_settings, selectors = None, [entry]
            else:
                raise ValueError(f"{where} must be a task selector or a mapping with select, run and "
                                 f"hyperparameters, got {entry!r}.")  # fmt: skip
            for selector in selectors:
                try:
                    expanded = select_tasks(selector)
                except DatasetError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                for task in expanded:
                    earlier = named_by.setdefault(task, i)
                    if earlier != i and (entry_settings is not None or task in settings):
                        raise ValueError(
                            f"tasks[{earlier}] and tasks[{i}] both name {task}, and one of them gives it settings; "
                            f"name each task once where it has settings."
                        )
                    if task not in tasks:
                        tasks.append(task)
                    if entry_settings is not None:
                        settings[task] = entry_settings
        return raw | {"tasks": tuple(tasks), "task_settings": settings}

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, raw: Any) -> Any:
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
            return tuple(range(raw))
        if (
            isinstance(raw, list)
            and raw
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw)
        ):
            if len(set(raw)) != len(raw):
                raise ValueError(f"seeds lists a seed twice: {raw!r}.")
            return tuple(raw)
        raise ValueError(f"seeds must be a count (seeds: 8) or a non-empty list of integers >= 0, got {raw!r}.")

    @field_validator("run", mode="before")
    @classmethod
    def _shared_run_settings(cls, raw: Any) -> Any:
        return _checked_run_settings(raw, "run")

    @field_validator("storage", mode="before")
    @classmethod
    def _absolute_storage(cls, storage: Any) -> str:
        if not isinstance(storage, str) or not storage.strip():
            raise ValueError(f"storage must be a directory name (results go to storage/<name>/), got {storage!r}.")
        return str(Path(storage).expanduser().absolute())

    @field_validator("tracking_uri")
    @classmethod
    def _one_store(cls, uri: str, info: ValidationInfo) -> str:
        """tracking_uri, else $MLFLOW_TRACKING_URI, else storage/mlflow.db: one store for every sweep there."""
        where = "tracking_uri" if uri else "MLFLOW_TRACKING_URI"
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        try:
            check_no_password(uri, where)
        except CredentialsInUriError as exc:
            raise ValueError(str(exc)) from None
        return resolve_tracking_uri(uri or None, Path(info.data.get("storage", "sweeps")))

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        for algo in self.algorithms:
            where = f"algorithms.{algo.name}"
            names = sweep_hyperparameters(algo.name)
            for part in ("hyperparameters", "grid", "search"):
                for key in getattr(algo, part):
                    if key in names and key in RUN_AXES:
                        raise ValueError(f"{where}.{part}.{key} is both a hyperparameter of {algo.name} and a run "
                                         f"setting; set the run setting in {where}.run.")  # fmt: skip
                    if key in names or (part == "grid" and key in RUN_AXES):
                        continue
                    hint = f" (it is a run setting: set it in {where}.run)" if key in RUN_AXES else ""
                    if part == "grid":
                        hint = " (nor a run setting a grid may sweep)"
                    raise ValueError(f"{where}.{part}: {algo.name} has no hyperparameter {key!r}{hint}."
                                     f"{did_you_mean(key, names)} Valid: {', '.join(names)}.")  # fmt: skip
            both = set(algo.run) & set(algo.run_axes())
            if both:
                raise ValueError(f"{where}: {', '.join(sorted(both))} is both fixed (run) and swept (grid); keep one.")
            if algo.search and self.mode != "optuna":
                raise ValueError(f"{where}.search is used by mode: optuna only; for mode {self.mode} give a grid.")
            if algo.grid and self.mode == "optuna":
                raise ValueError(f"{where}.grid: mode optuna searches a space; write it under {where}.search.")
            if self.mode == "optuna" and not algo.search:
                raise ValueError(f"{where}.search is empty: mode optuna needs at least one hyperparameter to search.")
            overlap = set(algo.hyperparameters) & (set(algo.grid) | set(algo.search))
            if overlap:
                raise ValueError(f"{where}: {', '.join(sorted(overlap))} is both fixed and swept; keep one.")
        if self.mode == "optuna" and len(self.seeds) % self.seeds_per_trial:
            raise ValueError(f"seeds_per_trial {self.seeds_per_trial} does not divide the {len(self.seeds)} seeds: "
                             f"mode optuna scores a suggestion by the mean of its seed groups, which is the mean "
                             f"over seeds only when every group has as many seeds. Set seeds_per_trial to a divisor "
                             f"of {len(self.seeds)} ({_divisors(len(self.seeds))}).")  # fmt: skip
        if self.optuna != OptunaSettings() and self.mode != "optuna":
            raise ValueError(f"optuna settings are used by mode: optuna only (mode is {self.mode}).")
        if self.run.get("base_serving") == "gpu" and not self.resources.gpu:
            raise ValueError("run.base_serving 'gpu' serves each trial's base policy on the trial's GPU, but trials "
                             "get none: set resources.gpu (e.g. 0.25 to share a GPU by four), or use "
                             "base_serving 'node'.")  # fmt: skip
        self._consistent_task_settings()
        return self

    def _consistent_task_settings(self) -> None:
        """A task entry's hyperparameters name algorithms of the sweep and their hyperparameters; neither they nor
        its run settings may also be set by an algorithm (fixed or swept): one place per value."""
        algorithms = {a.name: a for a in self.algorithms}
        checked: set[int] = set()
        for task, entry in self.task_settings.items():
            if id(entry) in checked:
                continue
            checked.add(id(entry))
            where = f"tasks entry {entry.select!r}"
            for name, overrides in entry.hyperparameters.items():
                if name not in algorithms:
                    raise ValueError(f"{where}: hyperparameters.{name} names no algorithm of this sweep "
                                     f"({', '.join(algorithms)}).")  # fmt: skip
                names = sweep_hyperparameters(name)
                if not isinstance(overrides, dict):
                    raise ValueError(f"{where}: hyperparameters.{name} must be a mapping, got {overrides!r}.")
                for key in overrides:
                    if key not in names:
                        raise ValueError(f"{where}: {name} has no hyperparameter {key!r}.{did_you_mean(key, names)}")
                algo = algorithms[name]
                twice = set(overrides) & (set(algo.hyperparameters) | set(algo.grid) | set(algo.search))
                if twice:
                    raise ValueError(f"{where} and algorithms.{name} both set {', '.join(sorted(twice))} on {task}; "
                                     f"keep one.")  # fmt: skip
            for algo in self.algorithms:
                twice = set(entry.run) & (set(algo.run) | set(algo.run_axes()))
                if twice:
                    raise ValueError(f"{where}.run and algorithms.{algo.name} both set {', '.join(sorted(twice))} "
                                     f"on {task}; keep one.")  # fmt: skip

    # ------------------------------------------------------------------ derived values

    @property
    def directory(self) -> Path:
        return Path(self.storage) / self.name

    @property
    def runs_dir(self) -> Path:
        return self.directory / "runs"

    def run_settings(self, algo: str, task: str | None = None) -> dict[str, Any]:
        """The run settings of `algo`'s trials (on `task`): the sweep's run, then the task entry's and the
        algorithm's own run (key by key; those two never set the same key)."""
        own = next((a.run for a in self.algorithms if a.name == algo), {})
        entry = self.task_settings.get(task) if task else None
        return dict(self.run) | (entry.run if entry else {}) | own

    def run_spec(self, algo: str, task: str, seed: int, point: dict[str, Any]) -> RunSpec:
        """The validated RunSpec of one trial; ``point`` holds its hyperparameters and the run settings its grid
        sweeps, over the task entry's settings for ``task``."""
        hyperparameters, swept = split_point(algo, point)
        entry = self.task_settings.get(task)
        if entry is not None:
            hyperparameters = entry.hyperparameters.get(algo, {}) | hyperparameters
        values = (
            self.run_settings(algo, task)
            | swept
            | {
                "algo": algo,
                "task": task,
                "seed": seed,
                "hyperparameters": hyperparameters,
                "output_dir": str(self.runs_dir),
                "tracking_uri": self.tracking_uri,
                "experiment": self.name,
                "sweep": self.name,
            }
        )
        return RunSpec.from_dict(values)

    @property
    def data(self) -> DataSpec:
        """The data settings every trial shares (run.data)."""
        return DataSpec.model_validate(self.run.get("data") or {})

    def datasets(self) -> list[DatasetInfo]:
        seen: dict[str, DatasetInfo] = {}
        for task in self.tasks:
            info = parse_task(task).dataset
            seen.setdefault(info.name, info)
        return list(seen.values())


# ---------------------------------------------------------------------------------------------- loading


def load_sweep(path: Path | str, *, storage: Path | str | None = None) -> SweepSpec:
    """Read and validate a sweep file; relative storage paths are relative to the working directory."""
    path = Path(path)
    try:
        values = read_yaml(path, "sweep file")
    except YamlInputError as exc:
        raise SweepSpecError(str(exc)) from None
    if not isinstance(values, dict):
        raise SweepSpecError(f"{path} must hold a mapping of sweep fields ({', '.join(SweepSpec.model_fields)}).")
    values.setdefault("name", path.stem)
    if storage is not None:
        values["storage"] = str(storage)
    try:
        return parse_sweep(values | {"source": str(path.absolute())})
    except SweepSpecError as exc:
        raise SweepSpecError(f"{path}: {exc}") from None


def parse_sweep(values: dict[str, Any]) -> SweepSpec:
    """Validate plain data (a parsed YAML file) into a SweepSpec, and build one trial of each kind."""
    try:
        spec = SweepSpec.model_validate(values)
    except ValidationError as exc:
        raise SweepSpecError(first_error(exc, SweepSpec)) from None
    _check_trials(spec)
    return spec


def sweep_schema() -> dict[str, Any]:
    """The sweep file's JSON Schema (for editors: docs/sweep.schema.json), written as the file is written:
    algorithms as a list of names or a mapping from name to {hyperparameters, grid, search}."""
    schema = SweepSpec.model_json_schema()
    entry = AlgorithmSweep.model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(entry.pop("$defs", {}))
    entry["properties"].pop("name")
    defs["AlgorithmSweep"] = entry
    defs["RunSettings"] = RunSettings.model_json_schema()
    defs.update(defs["RunSettings"].pop("$defs", {}))
    names = list(ALGORITHMS)
    schema["properties"]["algorithms"] = {
        "description": schema["properties"]["algorithms"].get("description", ""),
        "anyOf": [
            {"type": "array", "items": {"enum": names}, "minItems": 1},
            {"type": "object", "propertyNames": {"enum": names}, "minProperties": 1,
             "additionalProperties": {"anyOf": [{"$ref": "#/$defs/AlgorithmSweep"}, {"type": "null"}]}},
        ],
    }  # fmt: skip
    task_entry = TaskSettings.model_json_schema()
    defs["TaskSettings"] = task_entry
    defs["TaskSettings"]["properties"]["run"] = {"$ref": "#/$defs/RunSettings"}
    schema["properties"]["tasks"] = {
        "description": schema["properties"]["tasks"]["description"],
        "anyOf": [{"type": "string"}, {"$ref": "#/$defs/TaskSettings"},
                  {"type": "array", "items": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/TaskSettings"}]},
                   "minItems": 1}],
    }  # fmt: skip
    schema["properties"]["seeds"] = {
        "description": schema["properties"]["seeds"]["description"],
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "array", "items": {"type": "integer", "minimum": 0},
                                                       "minItems": 1, "uniqueItems": True}],
    }  # fmt: skip
    schema["properties"]["run"] = {"$ref": "#/$defs/RunSettings"}
    schema["properties"].pop("source")
    schema["properties"].pop("task_settings")
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]
    return json.loads(json.dumps(schema, default=str))


def _check_trials(spec: SweepSpec) -> None:
    """Build one RunSpec per (algorithm, grid point or search bound, task) so bad values fail now, by name."""
    for algo in spec.algorithms:
        points = algo.grid_points() if spec.mode != "optuna" else [algo.hyperparameters | _search_probe(algo)]
        for point, task in itertools.product(points, spec.tasks):
            try:
                run = spec.run_spec(algo.name, task, spec.seeds[0], point)
            except RunSpecError as exc:
                where = _where_set(spec, algo, task, point, lambda key, text=str(exc): key in text)
                if where == "run" and "hyperparameters" in str(exc):
                    where = f"algorithms.{algo.name} on {task}"
                raise SweepSpecError(f"{where}: {exc}") from None
            _check_scored(run, _where_set(spec, algo, task, point, _SCORED_SETTINGS.__contains__))
    if spec.mode == "tune-then-broadcast":
        untuned = [a.name for a in spec.algorithms if not a.grid]
        if untuned:
            raise SweepSpecError(
                f"mode tune-then-broadcast tunes a grid on each dataset's default task, but "
                f"{', '.join(untuned)} has no grid; give algorithms.<name>.grid or use mode: grid."
            )


_SCORED_SETTINGS = ("eval_episodes", "eval_interval", "offline_steps", "online_steps")


def _where_set(
    spec: SweepSpec, algo: AlgorithmSweep, task: str, point: dict[str, Any], concerns: Callable[[str], bool]
) -> str:
    """Where the file sets the run settings a problem concerns, most specific first: the grid, the task entry,
    the algorithm's run, else the sweep's run."""
    entry = spec.task_settings.get(task)
    places = [
        (f"algorithms.{algo.name}.grid", split_point(algo.name, point)[1]),
        (f"tasks entry {entry.select!r}.run" if entry else "", entry.run if entry else {}),
        (f"algorithms.{algo.name}.run", algo.run),
    ]
    return next((where for where, settings in places if any(concerns(key) for key in settings)), "run")


def _check_scored(run: RunSpec, where: str) -> None:
    """Every trial gets a score (the report's rule, which also picks settings): it needs evaluations, and offline
    the last SCORED_EVALUATIONS of them within the offline phase (offline-to-online: the end of each phase)."""
    if run.eval_episodes == 0:
        raise SweepSpecError(
            f"{where}.eval_episodes is 0: a trial's score is its mean success over its last evaluations, so a sweep "
            "needs at least 1 episode per evaluation."
        )
    if run.online_steps == 0:
        window = schedule.last_evaluations(run.eval_interval, run.offline_steps, 0, run.offline_steps,
                                           SCORED_EVALUATIONS)  # fmt: skip
        if len(window) < SCORED_EVALUATIONS:
            largest = run.offline_steps // SCORED_EVALUATIONS
            raise SweepSpecError(
                f"{where}: eval_interval {run.eval_interval:,} with offline_steps {run.offline_steps:,} schedules "
                f"{len(window)} evaluation(s), but a trial's score (and its report cell) averages the last "
                f"{SCORED_EVALUATIONS}: set eval_interval to at most {largest:,}."
            )


def _own_run_settings(raw: Any) -> dict[str, Any]:
    """The run section of an algorithm or a task entry: run settings, less those every trial of a sweep shares."""
    raw = _checked_run_settings(raw, "run")
    shared = [key for key in SHARED_RUN_FIELDS if key in raw]
    if shared:
        raise ValueError(f".{shared[0]} is the same for every trial of a sweep (the data it prepares once, the "
                         f"resources it reserves per trial): set it in the sweep's run section.")  # fmt: skip
    return raw


def is_run_axis(algo: str, name: str) -> bool:
    """A grid name that is a run setting (action_chunk, utd, ...), not a hyperparameter of ``algo``."""
    return name in RUN_AXES and name not in sweep_hyperparameters(algo)


def sweep_hyperparameters(algo: str) -> list[str]:
    """The hyperparameters a sweep may set for ``algo``: its config's fields, less the one a run sets (the action
    chunk of a learner that can act in chunks: docs/chunking.md)."""
    return [name for name in hyperparameter_names(algo) if name != CHUNK_FIELD]


def split_point(algo: str, point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A grid point as (hyperparameters, run settings)."""
    run = {k: v for k, v in point.items() if is_run_axis(algo, k)}
    return {k: v for k, v in point.items() if k not in run}, run


def _checked_run_settings(raw: Any, where: str) -> dict[str, Any]:
    """A mapping of RunSpec settings that a sweep may fix (not the fields it sets per trial itself)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of run settings (offline_steps, eval_interval, ...), got {raw!r}.")
    for key in raw:
        if key in TRIAL_FIELDS:
            raise ValueError(f".{key} is set by the sweep itself (algorithms, tasks, seeds, storage, tracking_uri).")
    try:
        RunSettings.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(first_error(exc, RunSettings, where)) from None
    return dict(raw)


def _search_probe(algo: AlgorithmSweep) -> dict[str, Any]:
    """One value from each search distribution, to check that the algorithm accepts its type."""
    return {key: dist.args[0] if dist.kind in ("choice", "randint") else float(dist.args[0])
            for key, dist in algo.search.items()}  # fmt: skip


# ---------------------------------------------------------------------------------------------- helpers


def _product(grid: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*grid.values()))


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_value(a: Any, b: Any) -> bool:
    """Equal as hyperparameter values (10 == 10.0, [64, 64] == [64, 64]); True never equals 1 here."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b
