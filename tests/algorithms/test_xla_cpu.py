"""The CPU compilation changes in flowsteer.algorithms.xla_cpu: faster, and not one bit different."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from algo_helpers import ACT_DIM, OBS_DIM, random_transitions

from flowsteer.algorithms import get_algorithm, make_config, make_update_chunk, to_device_dataset
from flowsteer.algorithms.xla_cpu import OPT_OUT, apply_cpu_tweaks

pytestmark = pytest.mark.integration  # Python subprocesses that compile

# Random draws of every kind a learner makes, in one program (keys, normals, uniforms, integers), in a fresh
# process: "stock" never imports flowsteer, "imported" imports the packages a run imports, "applied" also calls
# apply_cpu_tweaks() as the run loop does. Prints the draws, the number of while loops in the compiled program
# (a rolled Threefry is one loop per draw) and what apply_cpu_tweaks() returned.
DRAWS = """
import json, sys
import jax
applied = None
if sys.argv[1] in ("imported", "applied"):
    import flowsteer.algorithms, flowsteer.platform.loop  # noqa: F401
if sys.argv[1] == "applied":
    from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
    applied = apply_cpu_tweaks()
def draws(key):
    a, b = jax.random.split(key)
    return (jax.random.split(a, 3), jax.random.normal(a, (7, 5)), jax.random.uniform(b, (9,)),
            jax.random.randint(b, (11,), 0, 1000))
key = jax.random.PRNGKey(1234)
compiled = jax.jit(draws).lower(key).compile()
loops = sum(" while(" in line for line in compiled.as_text().splitlines())
print(json.dumps({"draws": [jax.device_get(x).tolist() for x in compiled(key)], "loops": loops, "applied": applied}))
"""


def _draws(mode: str, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != OPT_OUT} | env
    done = subprocess.run(
        [sys.executable, "-c", DRAWS, mode], capture_output=True, text=True, check=True, env=environment
    )
    return json.loads(done.stdout)


def test_random_numbers_are_bitwise_those_of_stock_jax() -> None:
    stock, ours = _draws("stock"), _draws("applied")
    assert ours["applied"] and ours["loops"] < stock["loops"], (ours, stock)  # the tweak really changed the program
    for a, b in zip(stock["draws"], ours["draws"], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_importing_flowsteer_leaves_jax_as_it_is() -> None:
    assert _draws("imported")["loops"] == _draws("stock")["loops"]


def test_the_tweaks_can_be_turned_off() -> None:
    off = _draws("applied", **{OPT_OUT: "0"})
    assert off["applied"] is False
    assert off["loops"] == _draws("stock")["loops"]


def test_threefry_is_unrolled_in_the_compiled_update() -> None:
    """The rolled Threefry compiles to while loops; once the tweaks are applied, a learner's update has none."""
    assert apply_cpu_tweaks(), f"the tweaks are on unless {OPT_OUT}=0"
    config = make_config("fql", overrides={"actor_hidden_dims": (16,), "value_hidden_dims": (16,), "batch_size": 8})
    algorithm = get_algorithm("fql")
    state = algorithm.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    data = to_device_dataset(random_transitions(64))
    chunk = make_update_chunk(algorithm.update, config, 2)
    hlo = chunk.lower(state, data).compile().as_text()
    loops = [line for line in hlo.splitlines() if " while(" in line]
    # One loop is the scan over the chunk and one the flow's Euler steps; Threefry would add about 13.
    assert len(loops) <= 2, loops
