"""Seed groups: total seed-updates/s against the number of seeds trained in one program, per algorithm.

What a run's learner does offline, end to end: `SeedGroup.train_seeds` (flowsteer.workers.seed_group) with every
seed moving — the vmapped update chunk, the per-seed divergence checks on the host and the selection of the
moving seeds' rows — over one dataset shared by the group. Group size 1 is the single run's own learner
(`Learner.train`, no vmap), the baseline of the "vs 1 seed" column. The paper's networks (4×512, batch 256) on a
random dataset with OGBench's cube dimensions; updates per dispatch as a run's chunk_size.

Usage: python benchmarks/bench_seed_groups.py [--algos fql,iql] [--groups 1,2,4,8,16] [--chunk 100]
       [--seconds 10] [--trials 2] [--quick]
Prints a markdown table with the device JAX ran on; record it in bench_seed_groups_results.md with the date.
On a CPU the total stays near flat (the batched matmuls run no faster than one seed's); the target on a GPU is at
least 8x the single seed's throughput at 16 seeds. This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import numpy as np

from flowsteer.algorithms import make_config
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.workers.learner import Learner
from flowsteer.workers.seed_group import SeedGroup

OBS_DIM, ACT_DIM, DATASET_SIZE = 28, 5, 100_000


def random_dataset(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        "next_observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "rewards": -rng.integers(0, 2, size=n).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": np.zeros(n, np.float32),
    }


def seed_updates_per_second(
    algo: str, config: Any, dataset: dict[str, np.ndarray], group: int, chunk: int, seconds: float, trials: int
) -> float:
    """Best seed-updates/s over `trials` windows of about seconds/trials each, after one warm-up chunk (compile)."""
    if group == 1:
        learner = Learner(algo, config, dataset, 0, chunk)

        def advance() -> None:
            learner.train(chunk)
    else:
        learners = SeedGroup(algo, config, dataset, list(range(group)), chunk)
        everyone = [True] * group

        def advance() -> None:
            outcomes = learners.train_seeds(chunk, everyone)
            assert all(isinstance(o, dict) for o in outcomes.values()), "a seed diverged"

    advance()
    best = 0.0
    for _ in range(trials):
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < seconds / trials:
            advance()  # returns after the host has read the chunk's metrics: the work is done
            calls += 1
        best = max(best, calls * chunk * group / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default="fql,iql")
    parser.add_argument("--groups", default="1,2,4,8,16", help="comma-separated group sizes")
    parser.add_argument("--chunk", type=int, default=100, help="updates per dispatch (a run's chunk_size)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per row")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="groups 1,2,4, chunk 10, 2 s per row")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.chunk, args.seconds = "1,2,4", 10, 2.0
    apply_cpu_tweaks()
    dataset = random_dataset(DATASET_SIZE)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")
    print(f"paper size: 4×512, batch 256; obs {OBS_DIM}, action {ACT_DIM}; {args.chunk} updates per dispatch\n")
    print("| algorithm | seeds | seed-updates/s (all seeds) | updates/s per seed | vs 1 seed |")
    print("|---|---|---|---|---|")
    for algo in args.algos.split(","):
        config = make_config(algo)  # the paper's defaults: 4×512 networks, batch 256
        single = None
        for group in [int(g) for g in args.groups.split(",")]:
            ups = seed_updates_per_second(algo, config, dataset, group, args.chunk, args.seconds, args.trials)
            single = ups if group == 1 else single
            ratio = f"{ups / single:.2f}x" if single else "n/a"
            print(f"| {algo} | {group} | {ups:,.0f} | {ups / group:,.1f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
