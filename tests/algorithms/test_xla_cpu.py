"""The CPU compilation changes in flowsteer.algorithms.xla_cpu: faster, and not one bit different."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, random_transitions

from flowsteer.algorithms import get_algorithm, make_config, make_update_chunk, to_device_dataset

pytestmark = pytest.mark.integration  # Python subprocesses that compile

# Random draws of every kind a learner makes, in one program: keys, normals, uniforms, integers.
DRAWS = """
import json, sys
import jax
if sys.argv[1] == "flowsteer":
    import flowsteer.algorithms  # noqa: F401
def draws(key):
    a, b = jax.random.split(key)
    return (jax.random.split(a, 3), jax.random.normal(a, (7, 5)), jax.random.uniform(b, (9,)),
            jax.random.randint(b, (11,), 0, 1000))
out = jax.jit(draws)(jax.random.PRNGKey(1234))
print(json.dumps([jax.device_get(x).tolist() for x in out]))
"""


def _draws(mode: str) -> list:
    done = subprocess.run([sys.executable, "-c", DRAWS, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_random_numbers_are_bitwise_those_of_stock_jax() -> None:
    stock, ours = _draws("stock"), _draws("flowsteer")
    for a, b in zip(stock, ours, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_threefry_is_unrolled_in_the_compiled_update() -> None:
    """The rolled Threefry compiles to while loops; after flowsteer's import, a learner's update has none."""
    config = make_config("fql", overrides={"actor_hidden_dims": (16,), "value_hidden_dims": (16,), "batch_size": 8})
    algorithm = get_algorithm("fql")
    state = algorithm.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    data = to_device_dataset(random_transitions(64))
    chunk = make_update_chunk(algorithm.update, config, 2)
    hlo = chunk.lower(state, data).compile().as_text()
    loops = [line for line in hlo.splitlines() if " while(" in line]
    # One loop is the scan over the chunk and one the flow's Euler steps; Threefry would add about 13.
    assert len(loops) <= 2, loops
