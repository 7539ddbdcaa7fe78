"""SweepSpec: a validated sweep file (YAML).

A sweep names algorithms (each with fixed hyperparameters and a grid or a search space), tasks, seeds, the
run settings every trial shares, resources per trial and where results go. Everything is checked here,
before Ray starts: a bad file fails with a message that names the field (``algorithms.fql.grid.alpha``)
and what it accepts. See examples/*.yaml for annotated files.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsteer.algorithms.registry import ALGORITHMS, hyperparameter_names
from flowsteer.datasets.catalog import DATASETS, NUM_TASKS, DatasetInfo, parse_task
from flowsteer.datasets.errors import DatasetError
from flowsteer.platform.spec import RunSpec, RunSpecError
from flowsteer.rundir import schedule
from flowsteer.trackinguri import CredentialsInUriError, check_no_password
from flowsteer.yamlfile import YamlInputError, read_yaml

SCORED_EVALUATIONS = 3  # a trial's score averages its last 3 evaluations, as the report's cells (the papers' rule)

MODES = ("grid", "tune-then-broadcast", "optuna")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# RunSpec fields a sweep sets itself (per trial, or from its own top-level keys).
_TRIAL_FIELDS = ("algo", "task", "seed", "hyperparameters", "output_dir", "tracking_uri", "experiment", "sweep")
# Groups of datasets a task entry may name.
GROUPS: dict[str, list[str]] = {
    "fql-paper": [d.name for d in DATASETS.values() if d.in_fql_paper],
    "manipulation": [d.name for d in DATASETS.values() if d.family.domain == "manipulation"],
    "locomotion": [d.name for d in DATASETS.values() if d.family.domain == "locomotion"],
}
_TOP_LEVEL = (
    "name",
    "mode",
    "algorithms",
    "tasks",
    "seeds",
    "run",
    "resources",
    "max_failures",
    "max_concurrent_trials",
    "storage",
    "tracking_uri",
    "optuna",
    "report",
)


class SweepSpecError(ValueError):
    """The sweep file cannot be run; the message names the field and what it accepts."""


@dataclass(frozen=True)
class AlgorithmSweep:
    """One algorithm of a sweep: fixed overrides, plus a grid (grid modes) or a search space (optuna)."""

    name: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # applied to every trial
    grid: dict[str, list[Any]] = field(default_factory=dict)  # cartesian product; empty: one point
    search: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {distribution: args}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid, each merged over the fixed hyperparameters."""
        names = list(self.grid)
        return [self.hyperparameters | dict(zip(names, values, strict=True)) for values in _product(self.grid)]


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0  # CPUs reserved per trial (the learner and in-process evaluation)
    gpu: float = 0.0  # GPUs per trial; a fraction shares a GPU, and JAX's memory fraction is set to match

    def as_ray(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu} if self.gpu else {"cpu": self.cpu}

    def jax_memory_fraction(self) -> float | None:
        """A little under the Ray fraction, so co-located trials' JAX pools never add up to more than the GPU."""
        return None if self.gpu <= 0 else round(min(self.gpu, 1.0) * 0.9, 3)


@dataclass(frozen=True)
class OptunaSettings:
    suggestions: int = 8  # hyperparameter settings Optuna proposes per (algorithm, task); each runs every seed
    seed: int = 0  # the sampler's seed
    max_concurrent: int = 0  # settings evaluated at once (0: no limit beyond the cluster)


@dataclass(frozen=True)
class ReportSettings:
    layouts: tuple[str, ...] = ("task", "published")
    formats: tuple[str, ...] = ("csv", "latex", "md")
    stats: bool = False
    plots: bool = False
    caption: str = ""  # opens every table's caption (say what a reduced protocol reduced)


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep; ``trials`` in flowsteer.sweeps.trials expands it."""

    name: str
    mode: str
    algorithms: tuple[AlgorithmSweep, ...]
    tasks: tuple[str, ...]  # canonical single-task names, in file order, without duplicates
    seeds: tuple[int, ...]
    run: dict[str, Any]  # RunSpec fields shared by every trial
    resources: Resources
    max_failures: int  # retries of a failed trial (each from its last checkpoint)
    max_concurrent_trials: int  # 0: as many as the cluster fits
    storage: Path  # results go to storage/<name>/
    tracking_uri: str
    optuna: OptunaSettings
    report: ReportSettings
    source: Path | None = None  # the file it came from

    @property
    def directory(self) -> Path:
        return self.storage / self.name

    @property
    def runs_dir(self) -> Path:
        return self.directory / "runs"

    def run_spec(self, algo: str, task: str, seed: int, hyperparameters: dict[str, Any]) -> RunSpec:
        """The validated RunSpec of one trial."""
        values = dict(self.run) | {
            "algo": algo,
            "task": task,
            "seed": seed,
            "hyperparameters": hyperparameters,
            "output_dir": str(self.runs_dir),
            "tracking_uri": self.tracking_uri,
            "experiment": self.name,
            "sweep": self.name,
        }
        return RunSpec.from_dict(values)

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
        raise SweepSpecError(f"{path} must hold a mapping of sweep fields ({', '.join(_TOP_LEVEL)}).")
    values.setdefault("name", path.stem)
    if storage is not None:
        values["storage"] = str(storage)
    try:
        return dataclasses.replace(parse_sweep(values), source=path.absolute())
    except SweepSpecError as exc:
        raise SweepSpecError(f"{path}: {exc}") from None


def parse_sweep(values: dict[str, Any]) -> SweepSpec:
    """Validate plain data (a parsed YAML file) into a SweepSpec."""
    _reject_unknown("sweep field", values, _TOP_LEVEL)
    name = values.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise SweepSpecError(f"name must be a non-empty word without spaces or slashes, got {name!r}.")
    mode = values.get("mode", "grid")
    if mode not in MODES:
        raise SweepSpecError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    algorithms = _parse_algorithms(values.get("algorithms"), mode)
    tasks = _parse_tasks(values.get("tasks"))
    seeds = _parse_seeds(values.get("seeds", 1))
    run = _parse_run(values.get("run") or {})
    storage = values.get("storage", "sweeps")
    if not isinstance(storage, str) or not storage.strip():
        raise SweepSpecError(f"storage must be a directory name (results go to storage/<name>/), got {storage!r}.")
    storage = Path(storage).expanduser().absolute()
    tracking_uri = values.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not isinstance(tracking_uri, str):
        raise SweepSpecError(f"tracking_uri must be a string (an MLflow URI), got {tracking_uri!r}.")
    try:
        check_no_password(tracking_uri, "tracking_uri" if values.get("tracking_uri") else "MLFLOW_TRACKING_URI")
    except CredentialsInUriError as exc:
        raise SweepSpecError(str(exc)) from None
    if not tracking_uri:
        tracking_uri = f"sqlite:///{storage / 'mlflow.db'}"  # one store for every sweep under storage/
    spec = SweepSpec(
        name=name,
        mode=mode,
        algorithms=algorithms,
        tasks=tasks,
        seeds=seeds,
        run=run,
        resources=_parse_resources(values.get("resources") or {}),
        max_failures=_int("max_failures", values.get("max_failures", 2), 0),
        max_concurrent_trials=_int("max_concurrent_trials", values.get("max_concurrent_trials", 0), 0),
        storage=storage,
        tracking_uri=tracking_uri,
        optuna=_parse_optuna(values.get("optuna") or {}, mode),
        report=_parse_report(values.get("report") or {}),
    )
    _check_trials(spec)
    return spec


def _parse_algorithms(raw: Any, mode: str) -> tuple[AlgorithmSweep, ...]:
    if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        raw = {a: {} for a in raw}
    if not isinstance(raw, dict) or not raw:
        raise SweepSpecError(
            "algorithms must name at least one algorithm, as a list (algorithms: [bc, fql]) or a mapping "
            "(algorithms: {fql: {grid: {alpha: [3, 10]}}})."
        )
    out = []
    for algo, body in raw.items():
        where = f"algorithms.{algo}"
        if algo not in ALGORITHMS:
            valid = ", ".join(ALGORITHMS)
            raise SweepSpecError(f"{where}: unknown algorithm {algo!r}.{_close(algo, ALGORITHMS)} Valid: {valid}.")
        body = body or {}
        if not isinstance(body, dict):
            raise SweepSpecError(f"{where} must be a mapping with hyperparameters, grid or search, got {body!r}.")
        _reject_unknown(f"field of {where}", body, ("hyperparameters", "grid", "search"))
        names = hyperparameter_names(algo)
        fixed = body.get("hyperparameters") or {}
        grid = body.get("grid") or {}
        search = body.get("search") or {}
        for part, mapping in (("hyperparameters", fixed), ("grid", grid), ("search", search)):
            if not isinstance(mapping, dict):
                raise SweepSpecError(f"{where}.{part} must be a mapping of hyperparameter names, got {mapping!r}.")
            for key in mapping:
                if key not in names:
                    raise SweepSpecError(
                        f"{where}.{part}: {algo} has no hyperparameter {key!r}.{_close(key, names)} "
                        f"Valid: {', '.join(names)}."
                    )
        for key, grid_values in grid.items():
            if not isinstance(grid_values, list) or not grid_values:
                raise SweepSpecError(f"{where}.grid.{key} must be a non-empty list of values, got {grid_values!r}.")
            for i, value in enumerate(grid_values):
                same = [other for other in grid_values[:i] if _same_value(other, value)]
                if same:  # 10 and 10.0 would be two trials of one setting, under two ids
                    raise SweepSpecError(
                        f"{where}.grid.{key} lists one value twice ({same[0]!r} and {value!r}); list each once."
                    )
        if search and mode != "optuna":
            raise SweepSpecError(f"{where}.search is used by mode: optuna only; for mode {mode} give a grid.")
        if grid and mode == "optuna":
            raise SweepSpecError(f"{where}.grid: mode optuna searches a space; write it under {where}.search.")
        if mode == "optuna" and not search:
            raise SweepSpecError(f"{where}.search is empty: mode optuna needs at least one hyperparameter to search.")
        for key, dist in search.items():
            _check_distribution(f"{where}.search.{key}", dist)
        overlap = set(fixed) & (set(grid) | set(search))
        if overlap:
            raise SweepSpecError(f"{where}: {', '.join(sorted(overlap))} is both fixed and swept; keep one.")
        out.append(AlgorithmSweep(algo, dict(fixed), dict(grid), dict(search)))
    return tuple(out)


def _check_distribution(where: str, dist: Any) -> None:
    if not isinstance(dist, dict) or len(dist) != 1:
        raise SweepSpecError(f"{where} must be one of {{{': [...]}, {'.join(DISTRIBUTIONS)}: [...]}}, got {dist!r}.")
    kind, args = next(iter(dist.items()))
    if kind not in DISTRIBUTIONS:
        valid = ", ".join(DISTRIBUTIONS)
        raise SweepSpecError(f"{where}: unknown distribution {kind!r}.{_close(kind, DISTRIBUTIONS)} Valid: {valid}.")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SweepSpecError(f"{where}.choice must be a non-empty list of values, got {args!r}.")
        return
    numbers = isinstance(args, list) and len(args) == 2 and all(_is_finite(a) for a in args)
    if not numbers or not args[0] < args[1]:
        raise SweepSpecError(f"{where}.{kind} must be [low, high] with low < high, got {args!r}.")
    if kind == "loguniform" and args[0] <= 0:
        raise SweepSpecError(f"{where}.loguniform needs low > 0, got {args[0]!r}.")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SweepSpecError(f"{where}.randint needs integers [low, high), got {args!r}.")


def _parse_tasks(raw: Any) -> tuple[str, ...]:
    """Task entries: a task, a dataset (its five tasks), 'DATASET:default' or 'DATASET:1,3', or a group."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise SweepSpecError(
            "tasks must be a non-empty list; entries: a task (cube-single-play-singletask-task2-v0), a dataset "
            "(cube-single-play: its five tasks), DATASET:default or DATASET:1,3, or a group "
            f"({', '.join(GROUPS)}, optionally :default)."
        )
    tasks: list[str] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, str):
            raise SweepSpecError(f"tasks[{i}] must be a string, got {entry!r}.")
        for task in _expand_task_entry(entry.strip(), f"tasks[{i}]"):
            if task not in tasks:
                tasks.append(task)
    return tuple(tasks)


def _expand_task_entry(entry: str, where: str) -> list[str]:
    base, _, selector = entry.partition(":")
    if base in GROUPS:
        infos = [DATASETS[name] for name in GROUPS[base]]
    elif "-singletask" in base:
        if selector:
            raise SweepSpecError(f"{where}: {entry!r} names one task already; drop ':{selector}'.")
        try:
            return [parse_task(base).name]
        except DatasetError as exc:
            raise SweepSpecError(f"{where}: {exc}") from None
    else:
        name = base if base.endswith("-v0") else f"{base}-v0"
        if name not in DATASETS:
            valid = [d.category for d in DATASETS.values()] + list(GROUPS)
            raise SweepSpecError(
                f"{where}: {base!r} is no OGBench dataset, task or group.{_close(base, valid)} Datasets: "
                f"{', '.join(d.category for d in DATASETS.values())}; groups: {', '.join(GROUPS)}; or a full task "
                f"name such as cube-single-play-singletask-task2-v0."
            )
        infos = [DATASETS[name]]
    if not selector:
        return [t for info in infos for t in info.task_names]
    if selector == "default":
        return [info.default_task_name for info in infos]
    try:
        ids = [int(part) for part in selector.split(",")]
    except ValueError:
        ids = []
    if not ids or any(not 1 <= k <= NUM_TASKS for k in ids):
        raise SweepSpecError(
            f"{where}: after ':' give 'default' or task numbers 1..{NUM_TASKS} (e.g. :1,3), got {selector!r}."
        )
    return [info.task_name(k) for info in infos for k in ids]


def _parse_seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SweepSpecError(f"seeds must be a count >= 1 or a list of seeds, got {raw!r}.")
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        if len(set(raw)) != len(raw):
            raise SweepSpecError(f"seeds lists a seed twice: {raw!r}.")
        return tuple(raw)
    raise SweepSpecError(f"seeds must be a count (seeds: 8) or a non-empty list of integers >= 0, got {raw!r}.")


def _parse_run(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SweepSpecError(f"run must be a mapping of run settings (offline_steps, eval_interval, ...), got {raw!r}.")
    valid = [f.name for f in dataclasses.fields(RunSpec) if f.name not in (*_TRIAL_FIELDS, "setting")]
    for key in raw:
        if key in _TRIAL_FIELDS:
            raise SweepSpecError(
                f"run.{key} is set by the sweep itself (algorithms, tasks, seeds, storage, tracking_uri)."
            )
    _reject_unknown("field of run", raw, valid)
    return dict(raw)


def _parse_resources(raw: Any) -> Resources:
    if not isinstance(raw, dict):
        raise SweepSpecError(f"resources must be a mapping like {{cpu: 1, gpu: 0.25}}, got {raw!r}.")
    _reject_unknown("field of resources", raw, ("cpu", "gpu"))
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    if not _is_finite(cpu) or cpu <= 0:
        raise SweepSpecError(f"resources.cpu must be a number > 0, got {cpu!r}.")
    if not _is_finite(gpu) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise SweepSpecError(f"resources.gpu must be 0, a fraction in (0, 1] or a whole number, got {gpu!r}.")
    return Resources(float(cpu), float(gpu))


def _parse_optuna(raw: Any, mode: str) -> OptunaSettings:
    if not isinstance(raw, dict):
        raise SweepSpecError(f"optuna must be a mapping like {{suggestions: 8, seed: 0}}, got {raw!r}.")
    if raw and mode != "optuna":
        raise SweepSpecError(f"optuna settings are used by mode: optuna only (mode is {mode}).")
    _reject_unknown("field of optuna", raw, [f.name for f in dataclasses.fields(OptunaSettings)])
    return OptunaSettings(
        suggestions=_int("optuna.suggestions", raw.get("suggestions", 8), 1),
        seed=_int("optuna.seed", raw.get("seed", 0), 0),
        max_concurrent=_int("optuna.max_concurrent", raw.get("max_concurrent", 0), 0),
    )


def _parse_report(raw: Any) -> ReportSettings:
    from flowsteer.reports.tables import LAYOUTS
    from flowsteer.reports.writers import FORMATS

    if not isinstance(raw, dict):
        raise SweepSpecError(f"report must be a mapping like {{layouts: [task], formats: [csv, md]}}, got {raw!r}.")
    _reject_unknown("field of report", raw, ("layouts", "formats", "stats", "plots", "caption"))
    defaults = ReportSettings()
    layouts = raw.get("layouts", list(defaults.layouts))
    formats = raw.get("formats", list(defaults.formats))
    for key, chosen, valid in (("layouts", layouts, LAYOUTS), ("formats", formats, FORMATS)):
        if not isinstance(chosen, list) or not chosen or any(c not in valid for c in chosen):
            raise SweepSpecError(f"report.{key} must be a non-empty list from {', '.join(valid)}, got {chosen!r}.")
    for key in ("stats", "plots"):
        if not isinstance(raw.get(key, False), bool):
            raise SweepSpecError(f"report.{key} must be true or false, got {raw[key]!r}.")
    if not isinstance(raw.get("caption", ""), str):
        raise SweepSpecError(f"report.caption must be text (it opens every table's caption), got {raw['caption']!r}.")
    return ReportSettings(tuple(layouts), tuple(formats), raw.get("stats", False), raw.get("plots", False),
                          raw.get("caption", ""))  # fmt: skip


def _check_trials(spec: SweepSpec) -> None:
    """Build one RunSpec per (algorithm, grid point or search bound, task) so bad values fail now, by name."""
    for algo in spec.algorithms:
        points = algo.grid_points() if spec.mode != "optuna" else [algo.hyperparameters | _search_probe(algo)]
        for point, task in itertools.product(points, spec.tasks):
            try:
                run = spec.run_spec(algo.name, task, spec.seeds[0], point)
            except RunSpecError as exc:
                where = f"algorithms.{algo.name} on {task}" if "hyperparameters" in str(exc) else "run"
                raise SweepSpecError(f"{where}: {exc}") from None
    _check_scored(run)  # the run settings are the same for every trial: any one of them tells
    if spec.mode == "tune-then-broadcast":
        untuned = [a.name for a in spec.algorithms if not a.grid]
        if untuned:
            raise SweepSpecError(
                f"mode tune-then-broadcast tunes a grid on each dataset's default task, but "
                f"{', '.join(untuned)} has no grid; give algorithms.<name>.grid or use mode: grid."
            )


def _check_scored(run: RunSpec) -> None:
    """Every trial gets a score (the report's rule, which also picks settings): it needs evaluations, and offline
    the last SCORED_EVALUATIONS of them within the offline phase (offline-to-online: the end of each phase)."""
    if run.eval_episodes == 0:
        raise SweepSpecError(
            "run.eval_episodes is 0: a trial's score is its mean success over its last evaluations, so a sweep "
            "needs at least 1 episode per evaluation."
        )
    if run.online_steps == 0:
        window = schedule.last_evaluations(run.eval_interval, run.offline_steps, 0, run.offline_steps,
                                           SCORED_EVALUATIONS)  # fmt: skip
        if len(window) < SCORED_EVALUATIONS:
            largest = run.offline_steps // SCORED_EVALUATIONS
            raise SweepSpecError(
                f"run: eval_interval {run.eval_interval:,} with offline_steps {run.offline_steps:,} schedules "
                f"{len(window)} evaluation(s), but a trial's score (and its report cell) averages the last "
                f"{SCORED_EVALUATIONS}: set eval_interval to at most {largest:,}."
            )


def _search_probe(algo: AlgorithmSweep) -> dict[str, Any]:
    """One value from each search distribution, to check that the algorithm accepts its type."""
    probe = {}
    for key, dist in algo.search.items():
        kind, args = next(iter(dist.items()))
        probe[key] = args[0] if kind in ("choice", "randint") else float(args[0])
    return probe


# ---------------------------------------------------------------------------------------------- helpers


def _product(grid: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*grid.values()))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _same_value(a: Any, b: Any) -> bool:
    """Equal as hyperparameter values (10 == 10.0, [64, 64] == [64, 64]); True never equals 1 here."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SweepSpecError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _close(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=2)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def _reject_unknown(kind: str, values: dict[str, Any], valid: Any) -> None:
    for key in values:
        if key not in valid:
            raise SweepSpecError(f"unknown {kind} {key!r}.{_close(key, valid)} Valid: {', '.join(valid)}.")
