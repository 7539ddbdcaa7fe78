"""OGBench single-task datasets as data: names, tasks, default tasks, dimensions, episode limits, categories.

Facts come from ogbench 1.2.2's environment registry and the FQL paper (Table 3 marks the default tasks; see
docs/design.md#datasets and docs/pitfalls.md pitfall 7); tests/datasets/test_catalog.py checks them against the
real environments.

Names, for a dataset file ``cube-single-play-v0`` (env family ``cube-single``, dataset type ``play``):
- task:   ``cube-single-play-singletask-task2-v0`` (or ``cube-single-play-singletask-v0`` for the default task)
- env:    ``cube-single-singletask-task2-v0`` (what ``gymnasium.make`` takes; built for us by ogbench)
- category (a row of the FQL paper's Table 2): ``cube-single-play``
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from flowsteer.datasets.errors import UnknownNameError

NUM_TASKS = 5
OFFICIAL_EPISODE_STEPS = 1001  # rows per episode in the official files (data_gen_scripts/commands.sh)


@dataclass(frozen=True)
class EnvFamily:
    """An OGBench environment family (a maze or a manipulation scene) and its single-task facts."""

    name: str  # e.g. 'cube-single'
    domain: str  # 'manipulation' or 'locomotion'
    obs_dim: int
    act_dim: int
    episode_steps: int  # single-task evaluation episode limit (max_episode_steps)
    default_task: int  # the task the papers tune on; the env id without -taskN resolves to it
    generator: str | None  # 'manipspace' or 'pointmaze': flowsteer can generate its data; None: official only


@dataclass(frozen=True)
class DatasetInfo:
    """One OGBench dataset (one pair of official files) and the five tasks defined on it."""

    family: EnvFamily
    dataset_type: str  # 'play', 'noisy' or 'navigate'
    official_episodes: int = 1000
    official_episode_steps: int = OFFICIAL_EPISODE_STEPS
    in_fql_paper: bool = False  # one of the 10 state-based datasets of the FQL paper's main tables

    @property
    def name(self) -> str:
        return f"{self.family.name}-{self.dataset_type}-v0"

    @property
    def category(self) -> str:
        return f"{self.family.name}-{self.dataset_type}"

    @property
    def generatable(self) -> bool:
        return self.family.generator is not None

    @property
    def official_transitions(self) -> int:
        return self.official_episodes * (self.official_episode_steps - 1)

    def task_name(self, task_id: int) -> str:
        return f"{self.category}-singletask-task{task_id}-v0"

    def env_name(self, task_id: int) -> str:
        return f"{self.family.name}-singletask-task{task_id}-v0"

    @property
    def task_names(self) -> list[str]:
        return [self.task_name(k) for k in range(1, NUM_TASKS + 1)]

    @property
    def default_task_name(self) -> str:
        return self.task_name(self.family.default_task)


@dataclass(frozen=True)
class TaskRef:
    """A single-task name resolved against the catalog; ``name`` is canonical (always carries -taskN)."""

    dataset: DatasetInfo
    task_id: int

    @property
    def name(self) -> str:
        return self.dataset.task_name(self.task_id)

    @property
    def env_name(self) -> str:
        return self.dataset.env_name(self.task_id)

    @property
    def is_default_task(self) -> bool:
        return self.task_id == self.dataset.family.default_task


def _family(name, domain, obs, act, steps, default, generator) -> EnvFamily:
    return EnvFamily(name, domain, obs, act, steps, default, generator)


FAMILIES: dict[str, EnvFamily] = {
    f.name: f
    for f in [
        # Locomotion: the data comes from SAC experts that only the dataset server has.
        _family("antmaze-large", "locomotion", 29, 8, 1000, 1, None),
        _family("antmaze-giant", "locomotion", 29, 8, 1000, 1, None),
        _family("humanoidmaze-medium", "locomotion", 69, 21, 2000, 1, None),
        _family("humanoidmaze-large", "locomotion", 69, 21, 2000, 1, None),
        _family("antsoccer-arena", "locomotion", 42, 8, 1000, 4, None),
        # Pointmaze: a scripted oracle (subgoal direction plus noise) made the official data.
        _family("pointmaze-medium", "locomotion", 2, 2, 1000, 1, "pointmaze"),
        _family("pointmaze-large", "locomotion", 2, 2, 1000, 1, "pointmaze"),
        _family("pointmaze-giant", "locomotion", 2, 2, 1000, 1, "pointmaze"),
        _family("pointmaze-teleport", "locomotion", 2, 2, 1000, 1, "pointmaze"),
        # Manipulation: scripted oracles shipped in the ogbench wheel made the official data.
        _family("cube-single", "manipulation", 28, 5, 200, 2, "manipspace"),
        _family("cube-double", "manipulation", 37, 5, 500, 2, "manipspace"),
        _family("cube-triple", "manipulation", 46, 5, 1000, 2, "manipspace"),
        _family("cube-quadruple", "manipulation", 55, 5, 1000, 2, "manipspace"),
        _family("scene", "manipulation", 40, 5, 750, 2, "manipspace"),
        _family("puzzle-3x3", "manipulation", 55, 5, 500, 4, "manipspace"),
        _family("puzzle-4x4", "manipulation", 83, 5, 500, 4, "manipspace"),
        _family("puzzle-4x5", "manipulation", 99, 5, 1000, 2, "manipspace"),
        _family("puzzle-4x6", "manipulation", 115, 5, 1000, 2, "manipspace"),
    ]
}

_FQL_PAPER = {
    "antmaze-large-navigate-v0",
    "antmaze-giant-navigate-v0",
    "humanoidmaze-medium-navigate-v0",
    "humanoidmaze-large-navigate-v0",
    "antsoccer-arena-navigate-v0",
    "cube-single-play-v0",
    "cube-double-play-v0",
    "scene-play-v0",
    "puzzle-3x3-play-v0",
    "puzzle-4x4-play-v0",
}
# Official sizes that differ from 1000 episodes x 1001 rows (data_gen_scripts/commands.sh).
_OFFICIAL_SIZE = {
    "antmaze-giant-navigate-v0": (500, 2001),
    "humanoidmaze-medium-navigate-v0": (1000, 2001),
    "humanoidmaze-large-navigate-v0": (1000, 2001),
    "cube-triple-play-v0": (3000, 1001),
    "cube-triple-noisy-v0": (3000, 1001),
    "puzzle-4x5-play-v0": (3000, 1001),
    "puzzle-4x5-noisy-v0": (3000, 1001),
    "cube-quadruple-play-v0": (5000, 1001),
    "cube-quadruple-noisy-v0": (5000, 1001),
    "puzzle-4x6-play-v0": (5000, 1001),
    "puzzle-4x6-noisy-v0": (5000, 1001),
}


def _dataset_types(family: EnvFamily) -> tuple[str, ...]:
    return ("play", "noisy") if family.domain == "manipulation" else ("navigate",)


def _build_datasets() -> dict[str, DatasetInfo]:
    out = {}
    for family in FAMILIES.values():
        for dataset_type in _dataset_types(family):
            name = f"{family.name}-{dataset_type}-v0"
            episodes, steps = _OFFICIAL_SIZE.get(name, (1000, OFFICIAL_EPISODE_STEPS))
            out[name] = DatasetInfo(family, dataset_type, episodes, steps, name in _FQL_PAPER)
    return out


DATASETS: dict[str, DatasetInfo] = _build_datasets()

_TASK_RE = re.compile(r"^(?P<category>.+)-singletask(?:-task(?P<task>\d+))?-v0$")


def all_task_names() -> list[str]:
    """Every single-task name flowsteer knows (five per dataset)."""
    return [t for d in DATASETS.values() for t in d.task_names]


def _unknown(kind: str, name: str, candidates: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Run `flowsteer data list --all` to see every known name.")


def get_dataset(name: str) -> DatasetInfo:
    """Look up a dataset by file name ('cube-single-play-v0'), category ('cube-single-play') or task name."""
    if name in DATASETS:
        return DATASETS[name]
    if f"{name}-v0" in DATASETS:
        return DATASETS[f"{name}-v0"]
    if "-singletask" in name:
        return parse_task(name).dataset
    raise _unknown("dataset", name, list(DATASETS) + [d.category for d in DATASETS.values()])


def parse_task(name: str) -> TaskRef:
    """Resolve a single-task name; a name without -taskN means the dataset's default task."""
    match = _TASK_RE.match(name)
    dataset = DATASETS.get(f"{match['category']}-v0") if match else None
    if dataset is None:
        raise _unknown("task", name, all_task_names())
    task_id = int(match["task"]) if match["task"] else dataset.family.default_task
    if not 1 <= task_id <= NUM_TASKS:
        raise UnknownNameError(
            f"Task {name!r}: OGBench single-task datasets have tasks 1..{NUM_TASKS}, not {task_id}. "
            f"Valid: {', '.join(dataset.task_names)}."
        )
    return TaskRef(dataset, task_id)


# ---------------------------------------------------------------------------------------------- task selectors

# Groups of datasets a task selector may name.
GROUPS: dict[str, list[str]] = {
    "fql-paper": [d.name for d in DATASETS.values() if d.in_fql_paper],
    "manipulation": [d.name for d in DATASETS.values() if d.family.domain == "manipulation"],
    "locomotion": [d.name for d in DATASETS.values() if d.family.domain == "locomotion"],
}
SELECTOR_HELP = (
    "a task (cube-single-play-singletask-task2-v0), a dataset (cube-single-play: its five tasks), "
    f"DATASET:default or DATASET:1,3, or a group ({', '.join(GROUPS)}, optionally :default)"
)


def select_tasks(selector: str) -> list[str]:
    """The canonical task names a selector names, in order: a task, a dataset (its five tasks),
    'DATASET:default' or 'DATASET:1,3', or a group of datasets ('fql-paper:default')."""
    base, _, which = selector.strip().partition(":")
    if base in GROUPS:
        infos = [DATASETS[name] for name in GROUPS[base]]
    elif "-singletask" in base:
        if which:
            raise UnknownNameError(f"{selector!r} names one task already; drop ':{which}'.")
        return [parse_task(base).name]
    else:
        name = base if base.endswith("-v0") else f"{base}-v0"
        if name not in DATASETS:
            valid = [d.category for d in DATASETS.values()] + list(GROUPS)
            close = difflib.get_close_matches(base, valid, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"{base!r} is no OGBench dataset, task or group.{hint} Datasets: "
                f"{', '.join(d.category for d in DATASETS.values())}; groups: {', '.join(GROUPS)}; or a full task "
                f"name such as cube-single-play-singletask-task2-v0."
            )
        infos = [DATASETS[name]]
    if not which:
        return [t for info in infos for t in info.task_names]
    if which == "default":
        return [info.default_task_name for info in infos]
    try:
        ids = [int(part) for part in which.split(",")]
    except ValueError:
        ids = []
    if not ids or any(not 1 <= k <= NUM_TASKS for k in ids):
        raise UnknownNameError(
            f"after ':' give 'default' or task numbers 1..{NUM_TASKS} (e.g. :1,3), got {which!r} in {selector!r}."
        )
    return [info.task_name(k) for info in infos for k in ids]


def single_task(selector: str) -> str:
    """The one canonical task a selector names (a task name, or e.g. 'cube-single-play:3' or ':default');
    a selector naming several tasks is refused: one run trains on one task, a sweep runs many."""
    if "-singletask" in selector and ":" not in selector:
        return parse_task(selector).name  # the common case, with parse_task's own hints for a misspelt task
    tasks = select_tasks(selector)
    if len(tasks) != 1:
        raise UnknownNameError(
            f"{selector!r} names {len(tasks)} tasks, and a run trains on one: name one (e.g. "
            f"{selector.partition(':')[0]}:default or :3), or run them all with a sweep."
        )
    return tasks[0]


def datasets_in_fql_paper() -> list[DatasetInfo]:
    """The 10 state-based OGBench datasets of the FQL paper, in its table order."""
    return [d for d in DATASETS.values() if d.in_fql_paper]
