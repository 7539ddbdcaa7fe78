"""The sweep layer's cost per trial, and what sharing one dataset between the trials of a node saves.

1. Overhead: where the wall time of a short trial goes. The stages of one trial are timed in a fresh
   process (interpreter and imports, dataset loading, learner set-up and compilation, training at the
   steady rate, evaluation), then a real sweep of N such trials runs on a private local Ray cluster and its
   slot-seconds per trial are compared with the training time.
2. Memory: K Ray workers on one node each hold the training set as the learner needs it, (a) each loading its
   own copy from disk (what a trial does today), (b) all reading one copy put in Ray's object store. The
   proportional set size (PSS: shared pages split among the processes mapping them) is summed over the
   workers and the raylet (which maps the object store).

    .venv/bin/python benchmarks/bench_sweeps.py [--part overhead|memory|all] [--trials 8] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALGO = "bc"
TASK = "cube-single-play-singletask-task2-v0"
HP = {"actor_hidden_dims": [256, 256], "batch_size": 256}


def _data(cache: Path, episodes: int) -> dict:
    return {"source": "generated", "episodes": episodes, "cache_dir": str(cache)}


# ---------------------------------------------------------------------------------------------- 1. overhead


def stage_timings(cache: str, episodes: int, steps: int, chunk: int) -> dict[str, float]:
    """Run in a fresh interpreter (see main): the stages of one trial, timed one by one."""
    started = time.perf_counter()
    from flowsteer.datasets import load_task
    from flowsteer.platform.evaluation import Evaluator
    from flowsteer.platform.spec import RunSpec
    from flowsteer.workers.learner import Learner

    out = {"imports": time.perf_counter() - started}
    spec = RunSpec.from_dict({"algo": ALGO, "task": TASK, "hyperparameters": HP, "offline_steps": steps,
                              "eval_episodes": 5, "eval_envs": 5, "data": _data(Path(cache), episodes)})  # fmt: skip
    config = spec.algo_config()
    t = time.perf_counter()
    task = load_task(TASK, progress=False, **{k: v for k, v in _data(Path(cache), episodes).items()})
    out["dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    learner = Learner(ALGO, config, task.train, 0, chunk)
    learner.train(chunk)
    first = time.perf_counter() - t
    t = time.perf_counter()
    learner.train(steps - chunk)
    rest = time.perf_counter() - t
    per_step = rest / (steps - chunk)
    out["compile"] = first - chunk * per_step
    out["training"] = steps * per_step
    t = time.perf_counter()
    with Evaluator(spec, config) as evaluator:
        out["evaluator set-up"] = time.perf_counter() - t
        t = time.perf_counter()
        evaluator.evaluate(learner.policy_state(), seed=0)
        out["evaluation"] = time.perf_counter() - t
    task.env.close()
    return out


def bench_overhead(args: argparse.Namespace, root: Path) -> None:
    from flowsteer.datasets.build import build_dataset
    from flowsteer.datasets.generate import GenerationSpec
    from flowsteer.sweeps.driver import run_sweep
    from flowsteer.sweeps.spec import parse_sweep
    from flowsteer.sweeps.trainable import read_attempts

    cache = root / "cache"
    build_dataset(GenerationSpec("cube-single-play-v0", episodes=args.episodes), cache, workers=2, progress=False)
    command = [sys.executable, __file__, "--stages", str(cache), str(args.episodes), str(args.steps), str(args.chunk)]
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    process_wall = time.perf_counter() - t
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    stages["interpreter start and exit"] = process_wall - sum(stages.values())

    spec = parse_sweep({
        "name": "bench", "algorithms": {ALGO: {"hyperparameters": HP}}, "tasks": [TASK],
        "seeds": args.trials, "storage": str(root / "storage"), "report": {"layouts": ["task"], "formats": ["csv"]},
        "run": {"offline_steps": args.steps, "eval_interval": args.steps, "eval_episodes": 5, "eval_envs": 5,
                "chunk_size": args.chunk, "log_interval": args.chunk, "checkpoint_interval": args.steps,
                "data": _data(cache, args.episodes)},
    })  # fmt: skip
    t = time.perf_counter()
    outcome = run_sweep(spec, write=lambda line: None)
    sweep_wall = time.perf_counter() - t
    assert outcome.counts == {"finished": args.trials}, outcome.counts
    inside = []
    for trial in outcome.trials:
        attempts = read_attempts(trial.spec.run_dir)
        inside.append(attempts[-1]["time"] - attempts[0]["time"])
    slots = outcome.cluster.cpus if outcome.cluster else 2
    per_trial = sweep_wall * slots / args.trials

    sizes = f"{HP['actor_hidden_dims']} MLP, batch {HP['batch_size']}"
    print(f"# sweep overhead: {args.trials} trials of {ALGO} ({sizes}), {args.steps} steps, "
          f"1 evaluation of 5 episodes; {os.cpu_count()} CPUs\n")  # fmt: skip
    print("One trial's stages in a fresh process:\n")
    print("| stage | seconds |\n|---|---|")
    for name in ("interpreter start and exit", "imports", "dataset", "compile", "training", "evaluator set-up",
                 "evaluation"):  # fmt: skip
        print(f"| {name} | {stages[name]:.2f} |")
    fixed = ("interpreter start and exit", "imports", "dataset", "compile", "evaluator set-up")
    overhead = sum(stages[k] for k in fixed)
    print(f"\nstart-up, dataset, compilation and evaluator set-up: {overhead:.1f} s against "
          f"{stages['training']:.1f} s of training ({overhead / stages['training']:.0%} of it)\n")  # fmt: skip
    print(f"The sweep ({int(slots)} trials at a time on a private local cluster, Ray start and report included):\n")
    print("| measure | seconds |\n|---|---|")
    print(f"| sweep wall time | {sweep_wall:.1f} |")
    print(f"| slot-seconds per trial (wall x slots / trials) | {per_trial:.1f} |")
    print(f"| inside the trainable per trial (mean) | {sum(inside) / len(inside):.1f} |")
    print(f"| training per trial (steady rate, alone) | {stages['training']:.1f} |")
    print(f"\ntraining is {stages['training'] / per_trial:.0%} of a trial slot; the rest is start-up, data, "
          f"compilation, evaluation, tracking and Tune (2 trials share 2 cores, so training also runs slower "
          f"than alone)")  # fmt: skip


# ---------------------------------------------------------------------------------------------- 2. memory


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


class Holder:
    """A Ray worker holding the training set as the learner does: numpy arrays and their JAX copies."""

    def __init__(self) -> None:
        # What every trial has anyway goes into the baseline: the imports, JAX, and an environment.
        import jax.numpy as jnp

        from flowsteer.datasets import make_env

        self.env = make_env(TASK)
        jnp.zeros(1).block_until_ready()
        self.data: list = []

    def pid(self) -> int:
        return os.getpid()

    def load_own(self, cache: str, episodes: int) -> int:
        from flowsteer.algorithms.training import to_device_dataset
        from flowsteer.datasets import load_task

        task = load_task(TASK, progress=False, **_data(Path(cache), episodes))
        task.env.close()  # only the arrays are measured; the baseline has an environment already
        self.data = [task.train, to_device_dataset(task.train)]
        return os.getpid()

    def load_shared(self, train: dict) -> int:
        from flowsteer.algorithms.training import to_device_dataset

        self.data = [train, to_device_dataset(train)]
        return os.getpid()


def bench_memory(args: argparse.Namespace, root: Path) -> None:
    import ray

    from flowsteer.datasets import load_task
    from flowsteer.datasets.store import cache_root

    cache = cache_root(None)  # the user's cache: a rerun does not generate the dataset again
    load_task(TASK, progress=True, workers=2, **_data(cache, args.memory_episodes))
    train = load_task(TASK, progress=False, **_data(cache, args.memory_episodes)).train
    size_mib = sum(v.nbytes for v in train.values()) / 2**20
    rows = len(train["observations"])
    print(f"\n# dataset sharing: {args.workers} workers, cube-single {args.memory_episodes} episodes "
          f"({rows:,} transitions, {size_mib:.0f} MiB of arrays)\n")  # fmt: skip
    print("| mode | PSS added, all workers + raylet (MiB) | per worker (MiB) |\n|---|---|---|")
    for mode in ("own copy per worker", "one copy in the object store"):
        temp = tempfile.mkdtemp(prefix="fsb", dir="/tmp")
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp, object_store_memory=max(2 * 10**9, int(4 * size_mib * 2**20)))  # fmt: skip
        try:
            raylet = _raylet_pid(temp)
            holders = [ray.remote(num_cpus=1)(Holder).remote() for _ in range(args.workers)]
            pids = ray.get([h.pid.remote() for h in holders])
            before = sum(_pss_kib(p) for p in [*pids, raylet])
            if mode.startswith("own"):
                ray.get([h.load_own.remote(str(cache), args.memory_episodes) for h in holders])
            else:
                ref = ray.put(train)
                ray.get([h.load_shared.remote(ref) for h in holders])
            time.sleep(1)
            after = sum(_pss_kib(p) for p in [*pids, raylet])
            added = (after - before) / 1024
            print(f"| {mode} | {added:.0f} | {added / args.workers:.0f} |")
        finally:
            ray.shutdown()


def _raylet_pid(temp: str) -> int:
    from flowsteer.sweeps.cluster import processes_using

    for pid in processes_using(Path(temp)):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
            return pid
    raise RuntimeError("raylet not found")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stages":
        cache, episodes, steps, chunk = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(stage_timings(cache, episodes, steps, chunk)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["overhead", "memory", "all"], default="all")
    parser.add_argument("--trials", type=int, default=8, help="trials of the overhead sweep")
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per trial")
    parser.add_argument("--chunk", type=int, default=500, help="updates per compiled dispatch")
    parser.add_argument("--episodes", type=int, default=10, help="episodes of the overhead sweep's dataset")
    parser.add_argument("--memory-episodes", type=int, default=100, help="episodes of the memory test's dataset")
    parser.add_argument("--workers", type=int, default=2, help="workers holding the dataset in the memory test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("overhead", "all"):
            bench_overhead(args, Path(tmp))
        if args.part in ("memory", "all"):
            bench_memory(args, Path(tmp))


if __name__ == "__main__":
    main()
