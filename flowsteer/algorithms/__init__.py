"""Pure JAX learners: one file per algorithm, shared pieces written once.

Every algorithm module has a frozen config dataclass and three pure functions:
`init(config, obs_dim, act_dim, key) -> TrainState`, `update(config, state, batch) -> (state, metrics)` and
`act(config, state, observations, key, deterministic) -> actions`. `training` runs many updates per dispatch
with the dataset on the device, optionally for several seeds at once.
"""

from flowsteer.algorithms.registry import ALGORITHMS, Algorithm, get_algorithm, hyperparameter_names, make_config
from flowsteer.algorithms.training import (
    TrainState,
    init_seeds,
    make_update_chunk,
    sample_batch,
    to_device_dataset,
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "TrainState",
    "get_algorithm",
    "hyperparameter_names",
    "init_seeds",
    "make_config",
    "make_update_chunk",
    "sample_batch",
    "to_device_dataset",
]
