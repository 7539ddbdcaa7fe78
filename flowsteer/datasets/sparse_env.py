"""The sparse reward on an environment (docs/algorithms.md#ogbench-options); apart from flowsteer.datasets.options,
which RunSpec imports, so that checking a run does not import gymnasium."""

from __future__ import annotations

from typing import SupportsFloat

import gymnasium
import numpy as np

from flowsteer.datasets.options import sparse_rewards


class SparseReward(gymnasium.RewardWrapper):
    """r <- -1·[r != 0] on every step, as QC's and QAM's online loops apply `--sparse` (ColinQiyangLi/qc main.py);
    terminated, truncated and info (success) are OGBench's own."""

    def reward(self, reward: SupportsFloat) -> float:
        value = float(reward)
        if value > 0:  # QC asserts r <= 0 first: the map would turn a positive reward into a penalty
            raise ValueError(f"sparse_reward expects OGBench's rewards <= 0, got {value} from {self.env}")
        return float(sparse_rewards(np.asarray(value)))
