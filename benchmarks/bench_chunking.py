"""What action chunking (Q-chunking, H = 5; docs/chunking.md) costs and saves, against single-step FQL.

Prints, in one run:
  1. updates/s of QC-FQL (H = 5) and FQL (H = 1) at the paper's size (4×512 MLPs, batch 256) on random data of
     OGBench manipulation shape (obs 28 and 40, action 5, episode ends every 1000 rows), with the FLOPs of one
     update (XLA's cost analysis of the compiled update, batch drawing included), H = 1 and H = 5 timed in
     alternating windows: a chunk update draws H rows per sample and its networks take or emit H·d = 25 action
     values instead of 5;
  2. the wall time of evaluation episodes on a real OGBench task (default: cube-double-play, its default task)
     with a random FQL policy at paper size, chunked (H = 5, one policy call per 5 environment steps, open loop)
     against single steps: environment steps, batched policy calls and seconds. What is measured is the number
     of policy calls per environment step, so the policy is untrained; its episodes run to the time limit.
     Skipped, with a note, where OGBench cannot be imported (a GPU machine without MuJoCo).

Usage: python benchmarks/bench_chunking.py [--quick] [--seconds 9] [--episodes 50] [--envs 10]
       [--task cube-double-play-singletask-v0] [--part all|updates|eval]
This is a benchmark, not a test: nothing is asserted. Part 1 imports nothing of flowsteer.datasets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from bench_algorithms import matmul_peak, timed_updates_per_second

from flowsteer.algorithms import get_algorithm, make_config, make_update_chunk, to_device_dataset
from flowsteer.algorithms.training import train_step
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.workers.rollout import make_policy, run_episodes

ACT_DIM, DATASET_SIZE, EPISODE_ROWS = 5, 100_000, 1000
CHUNKS = (1, 5)  # FQL, QC-FQL (QC's and QAM's H on OGBench manipulation)


def synthetic_dataset(obs_dim: int, n: int = DATASET_SIZE) -> dict[str, jax.Array]:
    """Random transitions of OGBench shape: sparse rewards and masks, an episode end every EPISODE_ROWS rows (so a
    few chunks cross one and are masked, as on the real data); throughput does not depend on the values."""
    rng = np.random.default_rng(0)
    rewards = -rng.integers(0, 2, size=n)
    return to_device_dataset(
        {
            "observations": rng.normal(size=(n, obs_dim)),
            "actions": rng.uniform(-1, 1, size=(n, ACT_DIM)),
            "next_observations": rng.normal(size=(n, obs_dim)),
            "rewards": rewards,
            "masks": (rewards < 0).astype(np.float32),
            "terminals": (np.arange(n) % EPISODE_ROWS == EPISODE_ROWS - 1).astype(np.float32),
        }
    )


def compiled_update(config: Any, obs_dim: int, data: dict, chunk: int) -> tuple[Callable[[Any], Any], Any, float]:
    """FQL's scanned update for `config` (its action_chunk sets the networks' action width), `chunk` updates per
    dispatch, compiled: (run(state) -> (state, metrics), initial state, FLOPs of one update)."""
    alg = get_algorithm("fql")
    state = alg.init(config, obs_dim, ACT_DIM * config.action_chunk, jax.random.PRNGKey(0))
    one = jax.jit(lambda s, d: train_step(alg.update, config, s, d)).lower(state, data).compile()
    cost = one.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost)["flops"])
    compiled = make_update_chunk(alg.update, config, chunk).lower(state, data).compile()
    return (lambda s: compiled(s, data)), state, flops


def bench_updates(args: argparse.Namespace) -> None:
    peaks, rows = [], []
    for obs_dim in args.obs_dims:
        data = synthetic_dataset(obs_dim)
        runs = {h: compiled_update(make_config("fql", action_chunk=h), obs_dim, data, args.chunk) for h in CHUNKS}
        rates = dict.fromkeys(CHUNKS, 0.0)
        # H = 1 and H = 5 take turns, one timed window each, best kept: load from other processes on a shared
        # machine then slows both alike instead of whichever ran during a busy moment.
        for trial in range(args.trials):
            peaks.append(matmul_peak())
            for horizon, (run, state, _) in runs.items():
                seconds = args.seconds / args.trials
                rate = timed_updates_per_second(run, state, args.chunk, seconds, 1, warm_up=trial == 0)
                rates[horizon] = max(rates[horizon], rate)
        for horizon, (_, _, flops) in runs.items():
            print(f"  obs {obs_dim}, H = {horizon}: {rates[horizon]:.2f} updates/s", file=sys.stderr, flush=True)
            rows.append((obs_dim, horizon, rates[horizon], flops))
    peak = max(peaks)
    print(f"\n## 1. Updates/s, FQL (H = 1) and QC-FQL (H = 5), 4×512, batch 256, {args.chunk} updates per dispatch\n")
    print(f"float32 matmul peak (2048×2048 jitted, best of the part): {peak:.1f} GFLOP/s. Rates: best of {args.trials}")
    print(f"timed windows of {args.seconds / args.trials:.1f} s each, H = 1 and H = 5 alternating.\n")
    print("| obs | H | action values | updates/s | GFLOP/update | GFLOP/s | % of matmul peak | time/update vs H = 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for obs_dim, horizon, rate, flops in rows:
        base = next(r for o, h, r, _ in rows if o == obs_dim and h == 1)
        gflops = flops * rate / 1e9
        print(
            f"| {obs_dim} | {horizon} | {ACT_DIM * horizon} | {rate:.2f} | {flops / 1e9:.2f} | {gflops:.1f} | "
            f"{100 * gflops / peak:.0f}% | {base / rate:.2f}x |"
        )


class CountingPolicy:
    """A batched policy that counts its calls (each acts for every environment at once) and the seconds they take."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.calls, self.seconds = policy, 0, 0.0

    def __call__(self, observations: np.ndarray, keys: jax.Array) -> np.ndarray:
        started = time.perf_counter()
        actions = np.asarray(self.policy(observations, keys))  # waits for the result, as the rollout does
        self.calls += 1
        self.seconds += time.perf_counter() - started
        return actions


def bench_evaluation(args: argparse.Namespace) -> None:
    print(f"\n## 2. Evaluation, {args.episodes} episodes on {args.task}, {args.envs} environments stepped together\n")
    try:
        import ogbench  # noqa: F401  (only to learn whether the environments can be built here)
    except ImportError as error:
        print(f"SKIPPED: ogbench cannot be imported here ({error}); install ogbench and mujoco to run this part.")
        return
    from flowsteer.datasets import make_env

    envs = [make_env(args.task) for _ in range(args.envs)]
    obs_dim = envs[0].observation_space.shape[-1]
    act_dim = envs[0].action_space.shape[-1]
    print("Random FQL policy at paper size (4×512); its episodes run to the time limit. Policy calls are batched")
    print("calls (one call acts for every environment); 'in policy calls' is the part of the seconds spent in them.")
    print("Compilation excluded (one warm-up call).\n")
    print(
        "| H | episodes | env steps | policy calls | steps per call and env | seconds | in policy calls | ms per step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for horizon in CHUNKS:
        config = make_config("fql", action_chunk=horizon)
        state = get_algorithm("fql").init(config, obs_dim, act_dim * horizon, jax.random.PRNGKey(0))
        policy = CountingPolicy(make_policy("fql", config, state))
        warm = np.zeros((args.envs, obs_dim), np.float32)
        policy(warm, jax.random.split(jax.random.PRNGKey(0), args.envs))  # compiles
        policy.calls, policy.seconds = 0, 0.0
        started = time.perf_counter()
        episodes = run_episodes(policy, envs, range(args.episodes), seed=0)
        seconds = time.perf_counter() - started
        steps = sum(e.length for e in episodes)
        results[horizon] = (seconds, policy.seconds)
        print(
            f"| {horizon} | {len(episodes)} | {steps:,} | {policy.calls:,} | {steps / policy.calls / len(envs):.1f} | "
            f"{seconds:.1f} | {policy.seconds:.1f} | {1000 * seconds / steps:.2f} |",
            flush=True,
        )
    print(f"\nChunked evaluation takes {results[5][0] / results[1][0]:.2f}x the time of single steps; its policy calls")
    print(f"take {results[5][1] / results[1][1]:.2f}x the time.")
    for env in envs:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="obs 28 only, 3 s timings, 20 updates/dispatch, 10 episodes"
    )
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per rate (all trials)")
    parser.add_argument("--trials", type=int, default=3, help="timed windows per rate; the best is kept")
    parser.add_argument("--chunk", type=int, default=100, help="updates per dispatch")
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes (default 50)")
    parser.add_argument("--envs", type=int, default=10, help="environments stepped together in evaluation")
    parser.add_argument("--task", default="cube-double-play-singletask-v0", help="OGBench task of part 2")
    parser.add_argument("--part", choices=["all", "updates", "eval"], default="all")
    args = parser.parse_args()
    args.seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 9.0)
    args.chunk = min(args.chunk, 20) if args.quick else args.chunk
    args.episodes = args.episodes if args.episodes is not None else (10 if args.quick else 50)
    args.obs_dims = (28,) if args.quick else (28, 40)
    tweaks = apply_cpu_tweaks()  # as a run does
    print(
        f"# flowsteer action chunking: JAX device {jax.devices()[0]} ({jax.default_backend()}), jax {jax.__version__}, "
        f"{os.cpu_count()} CPUs, XLA CPU tweaks {'on' if tweaks else 'off'}, load average {os.getloadavg()[0]:.2f}"
    )
    if args.part in ("all", "updates"):
        bench_updates(args)
    if args.part in ("all", "eval"):
        bench_evaluation(args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
