"""Evaluation wall time and the run loop's overhead.

1. 50 evaluation episodes of an FQL policy (paper sizes: 4x512 MLPs) on cube-single and puzzle-3x3:
   (a) one observation per policy call in a plain loop, the way the reference code evaluates;
   (b) 10 environments stepped together, one batched policy call per step;
   (c) 2 rollout workers (Ray actors) with 5 environments each.
2. Learner updates per second inside a full offline run (run loop: chunking, logging, checkpoints, MLflow)
   against the bare chunked update on the same data.

    .venv/bin/python benchmarks/bench_runs.py [--episodes 50] [--steps 3000] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from flowsteer.algorithms.registry import get_algorithm, make_config
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks
from flowsteer.datasets import load_task, make_env
from flowsteer.platform.evaluation import Evaluator
from flowsteer.platform.loop import run
from flowsteer.platform.spec import RunSpec
from flowsteer.workers.learner import Learner

TASKS = ["cube-single-play-singletask-task2-v0", "puzzle-3x3-play-singletask-task4-v0"]


def plain_loop(algo: str, config, state, task: str, episodes: int) -> float:
    """Reference-style evaluation: one env, one observation per jitted policy call."""
    act = jax.jit(lambda obs, key: get_algorithm(algo).act(config, state, obs, key, True))
    env = make_env(task)
    key = jax.random.PRNGKey(0)
    started = time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            key, step_key = jax.random.split(key)
            action = np.clip(np.asarray(act(obs[None], step_key))[0], -1, 1)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    env.close()
    return time.perf_counter() - started


def evaluator_time(spec: RunSpec, state, **fields) -> float:
    with Evaluator(spec.replace(**fields), spec.algo_config()) as evaluator:
        evaluator.evaluate(state, seed=0)  # compile and warm the workers
        started = time.perf_counter()
        evaluator.evaluate(state, seed=1)
        return time.perf_counter() - started


def bench_evaluation(args: argparse.Namespace, cache: Path) -> None:
    import ray

    print(f"\n1. evaluation wall time, {args.episodes} episodes, FQL 4x512 (s)")
    print(f"{'task':40s} {'plain loop':>10s} {'10 envs':>8s} {'2 workers':>9s}")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for task in TASKS:
            spec = RunSpec.from_dict(
                {
                    "algo": "fql",
                    "task": task,
                    "eval_episodes": args.episodes,
                    "data": {"source": "generated", "episodes": 2, "episode_steps": 101, "cache_dir": str(cache)},
                }
            )
            data = load_task(task, progress=False, **spec.to_dict()["data"])
            learner = Learner("fql", spec.algo_config(), data.train, seed=0, chunk_size=10)
            learner.train(10)
            state = learner.policy_state()
            plain = plain_loop("fql", spec.algo_config(), state, task, args.episodes)
            batched = evaluator_time(spec, state, eval_envs=10)
            workers = evaluator_time(spec, state, eval_envs=5, eval_workers=2)
            print(f"{task:40s} {plain:10.1f} {batched:8.1f} {workers:9.1f}", flush=True)
    finally:
        ray.shutdown()


def bench_overhead(args: argparse.Namespace, cache: Path, out: Path) -> None:
    task = TASKS[0]
    data = {"source": "generated", "episodes": 20, "episode_steps": 1001, "cache_dir": str(cache)}
    loaded = load_task(task, progress=False, **data)
    config = make_config("fql", task)
    learner = Learner("fql", config, loaded.train, seed=0, chunk_size=1000)
    learner.train(1000)  # compile
    started = time.perf_counter()
    learner.train(args.steps)
    bare = args.steps / (time.perf_counter() - started)

    spec = RunSpec.from_dict(
        {
            "algo": "fql",
            "task": task,
            "offline_steps": args.steps,
            "eval_interval": args.steps * 10,
            "eval_episodes": 0,
            "log_interval": 1000,
            "checkpoint_interval": 1000,
            "chunk_size": 1000,
            "data": data,
            "output_dir": str(out / "runs"),
            "tracking_uri": f"sqlite:///{out / 'mlflow.db'}",
        }
    )
    started = time.perf_counter()
    result = run(spec, progress=False)
    full = args.steps / (time.perf_counter() - started)
    print(f"\n2. FQL updates/s at paper sizes (4x512, batch 256), {args.steps} steps, {loaded.train['rewards'].size:,}")
    print("   transitions on the device")
    print(f"   bare chunked update:  {bare:8.1f} updates/s")
    print(f"   inside a full run:    {full:8.1f} updates/s (includes data loading, compilation, a checkpoint and a")
    print(f"                         train.csv row every 1000 steps, MLflow sync)  -> {full / bare:.0%} of bare")
    print(f"   run directory: {result.run_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="10 episodes, 1000 steps")
    parser.add_argument("--part", choices=["all", "eval", "overhead"], default="all")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.steps = 10, 1000
    apply_cpu_tweaks()  # the bare update is compiled as a run compiles it
    print(f"device: {jax.devices()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "eval"):
            bench_evaluation(args, Path(tmp))
        if args.part in ("all", "overhead"):
            bench_overhead(args, Path(tmp), Path(tmp))


if __name__ == "__main__":
    main()
