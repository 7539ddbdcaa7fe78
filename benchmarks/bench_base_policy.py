"""What serving a torch base policy costs DSRL-SAC (docs/base-policies.md).

Prints, in one run:
  1. base-policy calls per second and latency (median and 95th percentile, milliseconds) of a DPPO-size torch
     DDIM policy (residual MLP 3×512, 5 DDIM steps; untrained weights: the cost does not depend on them) at batch
     1 and batch 10, in-process against a Ray actor on the same node (base_serving 'process' and 'node');
  2. on a GPU (--device cuda): the same calls on the device, whether decoding is repeatable there (the same noise
     twice) and how far its actions are from the CPU's for the same inputs;
  3. DDPM training steps per second of `flowsteer base-policy train`'s trainer at DPPO's size (3×512, batch 128)
     on random data of cube-single's shapes, on the device;
  4. environment steps per second of DSRL-SAC's online collection on a real OGBench task (cube-single), one
     environment, one collector step at a time as the run loop does (no updates): the torch base in-process, the
     torch base in a Ray actor, and for reference flowsteer's own JAX flow base decoded inside the learner's
     compiled policy (4×512, 10 Euler steps). Skipped, with a note, where OGBench cannot be imported.

Usage: python benchmarks/bench_base_policy.py [--quick] [--calls 2000] [--steps 1000] [--device cpu|cuda]
       [--part all|calls|train|collect]
Where Ray cannot be imported (a GPU machine without it) the actor rows are skipped, with a note.
This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OBS_DIM, ACT_DIM = 28, 5  # cube-single
TASK = "cube-single-play-singletask-task2-v0"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def write_policy(directory: Path) -> Path:
    """A DPPO-size DDIM policy file for cube-single's shapes, as `flowsteer base-policy train` writes one."""
    from flowsteer.policies.ddpm import ddim_sampler
    from flowsteer.policies.fileformat import PolicyMetadata
    from flowsteer.policies.torch_policy import save_torchscript_policy

    sampler = ddim_sampler(OBS_DIM, ACT_DIM).eval()
    metadata = PolicyMetadata(
        format="flowsteer-base-policy", version=1, framework="torch", obs_dim=OBS_DIM, act_dim=ACT_DIM,
        action_chunk=1, sampler="ddim", sampler_steps=5,
    )  # fmt: skip
    path = directory / "base.pt"
    save_torchscript_policy(sampler, metadata, path)
    return path


def time_calls(policy: Any, rows: int, calls: int) -> tuple[float, float, float]:
    """(calls/s, median ms, p95 ms) of `calls` decodes of `rows` rows, after a warm-up."""
    rng = np.random.default_rng(0)
    observations = rng.standard_normal((rows, OBS_DIM)).astype(np.float32)
    noise = rng.standard_normal((rows, ACT_DIM)).astype(np.float32)
    for _ in range(20):
        policy.decode(observations, noise)
    latencies = []
    start = time.perf_counter()
    for _ in range(calls):
        begin = time.perf_counter()
        policy.decode(observations, noise)
        latencies.append(time.perf_counter() - begin)
    total = time.perf_counter() - start
    latencies.sort()
    return calls / total, 1e3 * statistics.median(latencies), 1e3 * latencies[int(0.95 * (len(latencies) - 1))]


def bench_calls(path: Path, device: str, calls: int, servings: tuple[str, ...]) -> None:
    from flowsteer.policies.serving import BasePolicySource, open_base_policy

    print(f"\n1. base-policy calls on {device}, DDIM x 5 on a 3x512 residual MLP, {calls} calls each")
    print("| serving | batch | calls/s | median ms | p95 ms |\n|---|---|---|---|---|")
    for serving in servings:
        policy = open_base_policy(BasePolicySource(str(path), device, serving))  # type: ignore[arg-type]
        for rows in (1, 10):
            rate, median, p95 = time_calls(policy, rows, calls)
            print(f"| {serving} | {rows} | {rate:,.0f} | {median:.2f} | {p95:.2f} |", flush=True)


def compare_devices(path: Path, device: str) -> None:
    from flowsteer.policies.torch_policy import load_torch_policy

    on_device, on_cpu = load_torch_policy(path, device), load_torch_policy(path, "cpu")
    rng = np.random.default_rng(1)
    observations = rng.standard_normal((256, OBS_DIM)).astype(np.float32)
    noise = rng.standard_normal((256, ACT_DIM)).astype(np.float32)
    first, second = on_device.decode(observations, noise), on_device.decode(observations, noise)
    gap = float(np.max(np.abs(first - on_cpu.decode(observations, noise))))
    print(f"\n2. {device}: the same noise twice gives the same actions: {np.array_equal(first, second)}; "
          f"largest difference from the CPU's actions over 256 rows: {gap:.2e}")  # fmt: skip


def bench_training(device: str, steps: int) -> None:
    from flowsteer.policies.ddpm import train_ddpm_policy

    rng = np.random.default_rng(0)
    rows = 100_000
    observations = rng.standard_normal((rows, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-1, 1, (rows, ACT_DIM)).astype(np.float32)
    terminals = (np.arange(rows) % 1000 == 999).astype(np.float32)
    train_ddpm_policy(observations, actions, terminals, steps=20, device=device)  # warm-up
    start = time.perf_counter()
    train_ddpm_policy(observations, actions, terminals, steps=steps, device=device)
    rate = steps / (time.perf_counter() - start)
    print(f"\n3. DDPM training on {device}, 3x512, batch 128: {rate:,.0f} steps/s over {steps} steps")


def bench_collection(path: Path, device: str, steps: int) -> None:
    try:
        from flowsteer.datasets import make_env
    except ImportError as exc:
        print(f"\n4. skipped: OGBench cannot be imported here ({exc})")
        return
    import jax

    from flowsteer.algorithms import get_algorithm, make_config
    from flowsteer.policies.serving import BasePolicySource, open_base_policy
    from flowsteer.workers.rollout import Collector

    print(f"\n4. DSRL-SAC online collection on {TASK}, {steps} environment steps, one environment")
    print("| base | env steps/s | ms per step |\n|---|---|---|")
    cases: list[tuple[str, dict[str, Any], Any]] = [
        ("JAX flow in the learner (4x512, 10 Euler steps)", {}, None),
        ("torch file, in-process", {"base_policy": str(path)}, "process"),
        ("torch file, Ray actor on the node", {"base_policy": str(path)}, "node"),
    ]
    env = make_env(TASK)
    for label, overrides, serving in cases:
        config = make_config("dsrl_sac", overrides=overrides)
        state = get_algorithm("dsrl_sac").init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
        base = open_base_policy(BasePolicySource(str(path), device, serving)) if serving else None
        collector = Collector(env, "dsrl_sac", config, seed=0, base=base)
        collector.reset(0)
        for t in range(20):  # compile
            collector.step(state, t)
        start, episode = time.perf_counter(), 1
        for t in range(steps):
            _, ended = collector.step(state, 20 + t)
            if ended:
                collector.reset(episode)
                episode += 1
        seconds = time.perf_counter() - start
        print(f"| {label} | {steps / seconds:,.0f} | {1e3 * seconds / steps:.2f} |", flush=True)
    env.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls and steps: a smoke run of the script")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=("all", "calls", "train", "collect"), default="all")
    args = parser.parse_args(argv)
    calls, steps = (100, 100) if args.quick else (args.calls, args.steps)

    print(f"device: {device_name(args.device)}")
    try:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        servings: tuple[str, ...] = ("process", "node")
    except ImportError:
        ray, servings = None, ("process",)
        print("Ray cannot be imported here: in-process serving only")
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = write_policy(Path(directory))
            if args.part in ("all", "calls"):
                bench_calls(path, args.device, calls, servings)
                if args.device != "cpu":
                    compare_devices(path, args.device)
            if args.part in ("all", "train"):
                bench_training(args.device, max(steps // 2, 20))
            if args.part in ("all", "collect") and ray is not None:
                bench_collection(path, args.device, steps)
    finally:
        if ray is not None:
            ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
