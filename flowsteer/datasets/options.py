"""Options of an OGBench single task that the reference code ran with (docs/algorithms.md#ogbench-options).

- Sparse reward, QC's and QAM's `--sparse` (ColinQiyangLi/qc main.py; ColinQiyangLi/qam main.py): r <- -1·[r != 0]
  on the training data and on every environment reward, online and in evaluation; masks and terminals stay.
  OGBench's single-task reward is #solved subtasks - #subtasks, so the map turns it into success - 1, the form
  the maze rewards already have; on a task with one subtask it changes nothing.
- Success timing: when OGBench's single-task environments compute reward, `terminated` and `info['success']`:
  'pre' (from the state before the action, as ogbench >= 1.2.0 registers them) or 'post' (after the physics step,
  every ogbench before 1.2.0: QC ran 1.1.2, FQL 1.1.0; OGBench CHANGELOG 1.2.0, README "success timing").
  Datasets are relabelled from each row's own state in every version, so only environments change.

Both default to what OGBench itself gives (no map; the installed ogbench's timing): a run at the defaults
computes exactly what runs computed before these options existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np

from flowsteer.datasets.catalog import TaskRef

SuccessTiming = Literal["default", "pre", "post"]
TIMING_SINCE = (1, 2, 0)  # the first ogbench with `success_timing` (its CHANGELOG)
_PLAIN_TIMING = "post"  # what every ogbench before TIMING_SINCE computes


@dataclass(frozen=True)
class TaskOptions:
    """How a task's rewards and successes are computed, the same for its data and all its environments."""

    sparse_reward: bool = False
    success_timing: SuccessTiming = "default"  # 'default': the installed ogbench's own (1.2.2: 'pre')

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for OGBench's environment (gymnasium.make); none at the defaults."""
        return {} if self.success_timing == "default" else {"success_timing": self.success_timing}


def subtasks(task: TaskRef) -> int:
    """n in OGBench's single-task reward #solved - n: the cubes, buttons, drawer and window (scene: 1 + 2 + 1 + 1),
    or the puzzle's buttons; 1 on the locomotion tasks, whose reward is success - 1."""
    family = task.dataset.family
    if family.domain == "locomotion":
        return 1
    if family.name == "scene":
        return 5
    if family.name.startswith("puzzle-"):
        rows, cols = re.fullmatch(r"puzzle-(\d+)x(\d+)", family.name).groups()  # type: ignore[union-attr]
        return int(rows) * int(cols)
    return {"cube-single": 1, "cube-double": 2, "cube-triple": 3, "cube-quadruple": 4}[family.name]


def installed_ogbench() -> str | None:
    try:
        return version("ogbench")
    except PackageNotFoundError:
        return None


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_options(task: TaskRef, options: TaskOptions) -> None:
    """Refuse options that would change nothing but the run id, or that the installed ogbench cannot apply."""
    if options.sparse_reward and subtasks(task) == 1:
        raise ValueError(
            f"sparse_reward changes nothing on {task.name}: its OGBench reward is already success - 1 in {{-1, 0}}, "
            f"so the run would differ from the plain run only in its id. Leave sparse_reward off; it "
            f"applies where the reward counts several subtasks (cube-double/triple/quadruple, scene, puzzle; QC and "
            f"QAM use it on scene and puzzle)."
        )
    installed = installed_ogbench()
    if options.success_timing != "default" and installed and _release(installed) < TIMING_SINCE:
        raise ValueError(
            f"success_timing {options.success_timing!r} needs ogbench >= {'.'.join(map(str, TIMING_SINCE))}, which "
            f"added the option; the installed ogbench {installed} always computes reward and success after the "
            f"action ('{_PLAIN_TIMING}'). Install a newer ogbench (pip install 'ogbench>=1.2'), or leave "
            f"success_timing at 'default'."
        )


def sparse_rewards(rewards: np.ndarray) -> np.ndarray:
    """QC's and QAM's map r <- -1·[r != 0], in the rewards' own dtype."""
    return np.where(rewards != 0, -1.0, 0.0).astype(rewards.dtype)


def apply_to_data(data: dict[str, np.ndarray], options: TaskOptions) -> dict[str, np.ndarray]:
    """A dataset's transitions under `options`: only the rewards change, and only with sparse_reward."""
    if not options.sparse_reward:
        return data
    return data | {"rewards": sparse_rewards(data["rewards"])}


def effective_timing(env: Any) -> str:
    """'pre' or 'post': when this OGBench environment computes reward, terminated and success."""
    return getattr(env.unwrapped, "_success_timing", _PLAIN_TIMING)  # older ogbench: always after the step


def reward_rule(task: TaskRef, options: TaskOptions, timing: str) -> str:
    """The reward of a run in words, for its protocol."""
    n = subtasks(task)
    ogbench = "success - 1" if n == 1 else f"#solved subtasks - {n}"
    if options.sparse_reward:
        rule = (
            f"r = -1·[r_ogbench != 0] = success - 1 in {{-1, 0}} (QC/QAM --sparse), r_ogbench = {ogbench}; on the "
            f"dataset, online and in evaluation"
        )
    else:
        values = "{-1, 0}" if n == 1 else f"{{-{n}, ..., 0}}"
        rule = f"r = {ogbench} in {values} (OGBench's single-task reward)"
    when = "before the action ('pre')" if timing == "pre" else "after the action ('post')"
    return (
        f"{rule}; masks = 1 - success, terminals unchanged; environments compute reward, terminated and success "
        f"from the state {when}, dataset rows from each row's own state"
    )
