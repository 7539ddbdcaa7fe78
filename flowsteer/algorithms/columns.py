"""Data columns a learner needs beyond the transition, computed from whole episodes (Cal-QL's Monte-Carlo returns).

A learner declares each such column once (`EpisodeColumn`): its name, how to compute it from the transitions of
one whole episode, and the value rows carry until their episode has ended. The Learner adds the column to the
dataset (every stored trajectory is an episode, `dataset_column`) and, online, writes the placeholder with each
transition and the computed values once its episode ends (flowsteer.workers.learner).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpisodeColumn:
    """A per-transition value that is a function of the whole episode the transition belongs to."""

    name: str
    # (config, {key: (T, ...) array} of one episode's transitions, in order) -> (T,) float32 values
    compute: Callable[[Any, Mapping[str, np.ndarray]], np.ndarray]
    placeholder: float  # the value of the rows of an episode that has not ended yet


def trajectory_bounds(terminals: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every stored trajectory: each ends at a row with terminals = 1 (the FQL data format's end of
    a stored trajectory) or at the last row."""
    ends = np.flatnonzero(np.asarray(terminals) > 0.5) + 1
    if ends.size == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    starts = np.concatenate([[0], ends[:-1]])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def dataset_column(config: Any, column: EpisodeColumn, data: Mapping[str, np.ndarray]) -> np.ndarray:
    """`column` over a transition dataset, computed per stored trajectory."""
    values = np.empty(len(data["rewards"]), np.float32)
    for start, stop in trajectory_bounds(data["terminals"]):
        episode = {k: np.asarray(v[start:stop]) for k, v in data.items()}
        values[start:stop] = column.compute(config, episode)
    return values
