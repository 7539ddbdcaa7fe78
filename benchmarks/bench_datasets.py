"""Generation throughput and peak memory: cube-single and puzzle-3x3, with 1 and 2 worker processes.

Each configuration runs in a fresh Python process so that its peak memory is its own. Prints a table:
transitions per second (training + validation rows), wall time, and the peak resident memory of the
building process and of the largest worker.

    .venv/bin/python benchmarks/bench_datasets.py [--episodes 20] [--datasets cube-single-play-v0 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(dataset: str, workers: int, episodes: int) -> dict:
    """Build one dataset in this process; report time and memory."""
    from flowsteer.datasets.build import build_dataset
    from flowsteer.datasets.generate import GenerationSpec

    spec = GenerationSpec(dataset, episodes=episodes, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        directory = build_dataset(spec, Path(cache), workers=workers, progress=False)
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in directory.glob("*.npz"))
    rows = spec.total_episodes * spec.episode_steps
    return {
        "dataset": dataset,
        "workers": workers,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "raw_mb": rows * _row_bytes(dataset) / 1e6,
        "file_mb": size / 1e6,
        "builder_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0,
    }


def _row_bytes(dataset: str) -> int:
    from flowsteer.datasets.build import row_layout
    from flowsteer.datasets.generate import GenerationSpec, make_collection_env

    spec = GenerationSpec(dataset, episodes=1)
    env = make_collection_env(spec)
    layout = row_layout(spec, env)
    env.close()
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in layout.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20, help="training episodes per run (1001 steps each)")
    parser.add_argument("--datasets", nargs="+", default=["cube-single-play-v0", "puzzle-3x3-play-v0"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "WORKERS", "EPISODES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), int(args.one[2]))))
        return

    print(f"machine: {os.cpu_count()} CPUs; {args.episodes} training episodes x 1001 steps (+10% validation)")
    header = f"{'dataset':22s} {'workers':>7s} {'rows':>8s} {'wall s':>7s} {'rows/s':>8s} "
    header += f"{'raw MB':>7s} {'file MB':>7s} {'builder peak MB':>15s} {'worker peak MB':>14s}"
    print(header)
    print("-" * len(header))
    for dataset in args.datasets:
        for workers in args.workers:
            command = [sys.executable, __file__, "--one", dataset, str(workers), str(args.episodes)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{r['dataset']:22s} {r['workers']:7d} {r['rows']:8d} {r['seconds']:7.1f} {r['rows_per_s']:8.0f} "
                f"{r['raw_mb']:7.1f} {r['file_mb']:7.1f} {r['builder_peak_mb']:15.0f} {r['worker_peak_mb']:14.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
