"""Update throughput of every learner at the paper's sizes, against this machine's dense-matmul peak.

Prints, in one run:
  1. the float32 matmul peak (jitted 2048×2048 @ 2048×2048, best of several timed repeats);
  2. per algorithm (default config: 4×512 MLPs, batch 256; IDQL: its own network and batch 512; DSRL-NA:
     its steering update, 10 critic heads for Q^A and for Q^W; DSRL-SAC: its online update): updates/s,
     FLOPs of one update (XLA's compiled cost analysis of one jitted update, batch sampling included),
     achieved GFLOP/s and the share of the peak; every other learner at its reference defaults (RLPD and
     Cal-QL: their update on a batch of the buffer). With FQL and FBRAC both in the run, FBRAC's time per
     update over FQL's (FQL paper: FQL avoids FBRAC's backpropagation through the Euler steps);
  3. FQL updates/s against the scan chunk size (updates per dispatch);
  4. updates/s against the number of seeds trained together with jax.vmap (FQL, or the --seed-algos);
  5. FQL with one learner per CPU core: one process per core, each pinned to its core (so XLA gives it one
     thread), all timed over the same seconds; the machine's throughput is their sum, as in a sweep that runs
     one trial per core.

Usage: python benchmarks/bench_algorithms.py [--quick] [--algos fql,iql] [--seconds 10] [--seeds 1,8,64]
       [--per-algorithm-only] [--seed-algos fql,iql]
The data are random transitions shaped like OGBench cube (obs 28, action 5); throughput does not depend on
the values. This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsteer.algorithms import (
    ALGORITHMS,
    get_algorithm,
    init_seeds,
    make_config,
    make_update_chunk,
    to_device_dataset,
)
from flowsteer.algorithms.training import train_step
from flowsteer.algorithms.xla_cpu import apply_cpu_tweaks

OBS_DIM, ACT_DIM, DATASET_SIZE = 28, 5, 100_000
# Time what each learner spends its run on: DSRL-NA's steering updates, not the base pretraining before them.
OVERRIDES: dict[str, dict[str, Any]] = {"dsrl_na": {"base_steps": 0}}


def random_dataset(n: int = DATASET_SIZE) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    return to_device_dataset(
        {
            "observations": rng.normal(size=(n, OBS_DIM)),
            "actions": rng.uniform(-1, 1, size=(n, ACT_DIM)),
            "next_observations": rng.normal(size=(n, OBS_DIM)),
            "rewards": -rng.integers(0, 2, size=n),
            "masks": np.ones(n),
            "terminals": np.zeros(n),
        }
    )


def dataset_for(algo: str, dataset: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """DSRL-SAC's update learns from online transitions labelled with the noise they were decoded from, Cal-QL's
    reads each transition's Monte-Carlo return; give them those columns (random actions stand in for noises and
    rewards for returns: only the speed is measured)."""
    alg = get_algorithm(algo)
    columns = alg.steering.online_columns if alg.steering is not None else ()
    episode_columns = {column.name: dataset["rewards"] for column in alg.episode_columns}
    return dataset | {name: dataset["actions"] for name in columns} | episode_columns


def matmul_peak(n: int = 2048, repeats: int = 5, trials: int = 2) -> float:
    """Best float32 GFLOP/s of a jitted n×n matmul over `trials` runs of `repeats` dispatches."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.block_until_ready()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def network_summary(config: Any) -> str:
    """'4×512' for MLP actors, 'resnet 3×256' for IDQL-style ones, plus the critic ensemble size if any."""
    if getattr(config, "actor_hidden_dims", None):
        dims = config.actor_hidden_dims
        nets = f"{len(dims)}×{dims[0]}"
    elif hasattr(config, "actor_num_blocks"):
        nets = f"resnet {config.actor_num_blocks}×{config.actor_hidden_dim}"
    else:
        nets = "see config"
    if hasattr(config, "num_critics"):
        nets += f", {config.num_critics} critic heads"
    return nets


def update_flops(algo: str, config: Any, dataset: dict) -> float:
    """FLOPs of one jitted update (sampling included), from XLA's cost analysis of the compiled program."""
    alg = get_algorithm(algo)
    state = alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    compiled = jax.jit(lambda s, d: train_step(alg.update, config, s, d)).lower(state, dataset).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def timed_updates_per_second(
    run: Callable[[Any], Any], state: Any, updates_per_call: int, min_seconds: float, trials: int, warm_up: bool
) -> float:
    """Best updates/s of `run(state) -> (state, metrics)` over `trials` windows of ≥ min_seconds/trials each.

    The best window, not the mean, because other processes on a shared machine only ever slow a run down.
    """
    if warm_up:
        state, _ = run(state)
        jax.block_until_ready(state)
    best = 0.0
    for _ in range(trials):
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < min_seconds / trials:
            state, _ = run(state)
            jax.block_until_ready(state)
            calls += 1
        best = max(best, calls * updates_per_call / (time.perf_counter() - start))
    return best


def throughput(algo: str, config: Any, dataset: dict, chunk: int, seconds: float, trials: int, seeds: int = 0) -> float:
    """Updates/s (summed over seeds when vmapped) of the scanned update with `chunk` updates per dispatch."""
    alg = get_algorithm(algo)
    fn = make_update_chunk(alg.update, config, chunk, vmap_seeds=seeds > 0)
    if seeds:
        state = init_seeds(alg.init, config, OBS_DIM, ACT_DIM, list(range(seeds)))
    else:
        state = alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(0))
    compiled = fn.lower(state, dataset).compile()  # compile once, so the warm-up is only one run

    def run(s):
        return compiled(s, dataset)

    # The AOT compile above already paid for compilation; big chunks skip the warm-up and run once per trial.
    big = chunk >= 1000
    per_call = chunk * max(seeds, 1)
    return timed_updates_per_second(run, state, per_call, 0.0 if big else seconds, 1 if big else trials, not big)


def _pinned_learner(core: int, algo: str, chunk: int, seconds: float, trials: int, start: Any, results: Any) -> None:
    """Child process: pin to `core` before JAX starts its thread pool (XLA sizes it from the affinity mask),
    compile, wait for every sibling, then time the chunked update like `throughput`."""
    os.sched_setaffinity(0, {core})
    apply_cpu_tweaks()  # a spawned process starts with stock JAX, like any other
    config = make_config(algo, overrides=OVERRIDES.get(algo))
    alg = get_algorithm(algo)
    data = dataset_for(algo, random_dataset())
    state = alg.init(config, OBS_DIM, ACT_DIM, jax.random.PRNGKey(core))
    compiled = make_update_chunk(alg.update, config, chunk).lower(state, data).compile()
    state, _ = compiled(state, data)
    jax.block_until_ready(state)
    start.wait()
    results.put(timed_updates_per_second(lambda s: compiled(s, data), state, chunk, seconds, trials, warm_up=False))


def per_core_throughput(algo: str, chunk: int, seconds: float, trials: int) -> list[float]:
    """Updates/s of each of os.cpu_count() concurrent single-core learners (spawned, so each has its own XLA)."""
    cores = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(len(cores)), ctx.Queue()
    procs = [ctx.Process(target=_pinned_learner, args=(c, algo, chunk, seconds, trials, start, results)) for c in cores]
    for proc in procs:
        proc.start()
    rates = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timings, chunk sizes ≤ 100, seeds ≤ 4")
    parser.add_argument("--algos", default=",".join(ALGORITHMS), help="comma-separated algorithm names")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (all trials)")
    parser.add_argument("--trials", type=int, default=3, help="timed windows per measurement; the best is kept")
    parser.add_argument("--chunk", type=int, default=100, help="updates per dispatch in the per-algorithm table")
    parser.add_argument(
        "--per-algorithm-only", action="store_true", help="only the per-algorithm table (no FQL chunk/seed/core tables)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seed counts for the vmap table (GPU: 1,8,64)")
    parser.add_argument("--seed-algos", default="fql", help="comma-separated algorithms of the vmap table")
    parser.add_argument("--seed-chunk", type=int, default=10, help="updates per dispatch in the vmap table")
    parser.add_argument(
        "--no-chunk-table", action="store_true", help="skip the FQL chunk-size table (its 1000-update compile is slow)"
    )
    args = parser.parse_args()
    tweaks = apply_cpu_tweaks()  # as a run does (FLOWSTEER_XLA_CPU_TWEAKS=0 measures stock JAX)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 9.0)
    chunk = min(args.chunk, 20) if args.quick else args.chunk
    algos = [a for a in args.algos.split(",") if a]
    for name in algos:
        get_algorithm(name)
    dataset = random_dataset()
    # The peak is re-measured before every measurement and the highest value of the run is the reference,
    # so a busy moment on a shared machine cannot inflate the percentages.
    peaks: list[float] = []

    def measure(label: str, fn: Callable[[], float]) -> float:
        peaks.append(matmul_peak())
        value = fn()
        print(f"  {label}: {value:.2f} updates/s (peak now {peaks[-1]:.0f} GFLOP/s)", file=sys.stderr, flush=True)
        return value

    load_before = os.getloadavg()[0]
    rows = []
    for name in algos:
        config = make_config(name, overrides=OVERRIDES.get(name))
        data = dataset_for(name, dataset)
        flops = update_flops(name, config, data)
        ups = measure(name, lambda c=config, n=name, d=data: throughput(n, c, d, chunk, seconds, args.trials))
        rows.append((name, network_summary(config), config.batch_size, ups, flops))

    chunk_rows, seed_rows, per_core = [], [], []
    if "fql" in algos and not args.per_algorithm_only:
        config = make_config("fql")
        fql_flops = next(r[4] for r in rows if r[0] == "fql")
        for size in () if args.no_chunk_table else (1, 10, 100) if args.quick else (1, 10, 100, 1000):
            ups = measure(
                f"fql chunk {size}", lambda s=size: throughput("fql", config, dataset, s, seconds, args.trials)
            )
            chunk_rows.append((size, ups))
        default_seeds = "1,2,4" if args.quick else "1,2,4,8"
        for name in [a for a in args.seed_algos.split(",") if a]:
            seed_config = make_config(name, overrides=OVERRIDES.get(name))
            seed_flops = update_flops(name, seed_config, dataset_for(name, dataset))
            for seeds in [int(n) for n in (args.seeds or default_seeds).split(",")]:
                ups = measure(
                    f"{name} {seeds} seeds",
                    lambda n=seeds, a=name, c=seed_config: throughput(
                        a, c, dataset_for(a, dataset), args.seed_chunk, seconds, args.trials, seeds=n
                    ),
                )
                seed_rows.append((name, seeds, ups, seed_flops))
        one_per_core = jax.default_backend() == "cpu" and hasattr(os, "sched_setaffinity")
        if one_per_core and len(os.sched_getaffinity(0)) > 1:
            peaks.append(matmul_peak())
            per_core = per_core_throughput("fql", chunk, seconds, args.trials)
            print(f"  fql one learner per core: {sum(per_core):.2f} updates/s", file=sys.stderr, flush=True)

    peak = max(peaks)
    print(
        f"# flowsteer algorithm throughput: {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()}), "
        f"XLA CPU tweaks {'on' if tweaks else 'off'}"
    )
    print(
        f"\nfloat32 matmul peak (2048×2048 jitted, best of the run): {peak:.1f} GFLOP/s "
        f"(lowest re-measurement {min(peaks):.1f}); load average {load_before:.2f} → {os.getloadavg()[0]:.2f}"
    )
    print(f"FLOPs: XLA cost analysis of one compiled update. Rates: best of {args.trials} timed windows.\n")
    print(f"## Per algorithm (default config, obs {OBS_DIM}, action {ACT_DIM}, {chunk} updates per dispatch)\n")
    print("| algorithm | networks | batch | updates/s | GFLOP/update | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|---|")
    for name, nets, batch, ups, flops in rows:
        gflops = flops * ups / 1e9
        print(
            f"| {name} | {nets} | {batch} | {ups:.2f} | {flops / 1e9:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f}% |"
        )
    speed = {name: ups for name, _, _, ups, _ in rows}
    if "fql" in speed and "fbrac" in speed:
        # FQL paper §4: FQL avoids FBRAC's backpropagation through the flow's Euler steps.
        print(f"\nFBRAC costs {speed['fql'] / speed['fbrac']:.2f}x FQL's time per update (same flow_steps).")
    if chunk_rows:
        print("\n## FQL against the scan chunk size (updates per dispatch)\n")
        print("| chunk | updates/s | % of matmul peak |")
        print("|---|---|---|")
        for size, ups in chunk_rows:
            print(f"| {size} | {ups:.2f} | {100 * fql_flops * ups / 1e9 / peak:.0f}% |")
    if seed_rows:
        print(f"\n## Against the number of vmapped seeds (chunk {args.seed_chunk})\n")
        print("| algorithm | seeds | seed-updates/s (all seeds) | updates/s per seed | vs 1 seed | % of matmul peak |")
        print("|---|---|---|---|---|---|")
        single = {name: ups for name, seeds, ups, _ in seed_rows if seeds == 1}
        for name, seeds, ups, flops in seed_rows:
            ratio = f"{ups / single[name]:.2f}x" if name in single else "-"
            share = 100 * flops * ups / 1e9 / peak
            print(f"| {name} | {seeds} | {ups:.2f} | {ups / seeds:.2f} | {ratio} | {share:.0f}% |")
    if per_core:
        total = sum(per_core)
        print(f"\n## FQL with one learner per core ({len(per_core)} processes, each pinned, chunk {chunk})\n")
        print("| learners | updates/s each | updates/s (machine) | GFLOP/s | % of matmul peak |")
        print("|---|---|---|---|---|")
        each = " / ".join(f"{r:.2f}" for r in per_core)
        gflops = fql_flops * total / 1e9
        print(f"| {len(per_core)} | {each} | {total:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f}% |")


if __name__ == "__main__":
    main()
