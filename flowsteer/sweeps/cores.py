"""Give a trial CPU cores of its own on its node.

Ray reserves `resources.cpu` CPUs per trial but does not say which, and XLA sizes its thread pool from the
process's affinity mask: two 1-CPU trials on a 2-core node each start two compute threads, four threads on
two cores. Pinned, each learner has one core and one thread: FQL trains about 4% faster per machine
(benchmarks/bench_algorithms_results.md).

Which cores are free is agreed through lock files in a node-local directory: a trial holds an exclusive
`flock` on one file per core for as long as it runs. The kernel drops a lock when its process dies, SIGKILL
included, so a crashed trial never keeps its cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def lock_dir() -> Path:
    """Node-local, per user: the same for every sweep of this user on this node."""
    return Path(tempfile.gettempdir()) / f"flowsteer-cores-{os.getuid()}"


def _take(cores: list[int], count: int, directory: Path) -> list[tuple[int, int]]:
    """Exclusive locks on the first `count` free cores of `cores`, as (core, fd); none if too few are free."""
    directory.mkdir(mode=0o700, exist_ok=True)
    held: list[tuple[int, int]] = []
    for core in cores:
        fd = os.open(directory / f"core-{core}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append((core, fd))
        if len(held) == count:
            return held
    for _, fd in held:
        os.close(fd)
    return []


# How long a trial waits for a core before it runs unpinned: Tune can start the next trial while the process of
# one that ended still holds its core (it may be writing its final checkpoint and closing its MLflow run). 10 s was
# too short on a loaded node: a fresh-clone suite saw a grid trial start unpinned.
CORE_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def pinned_cores(cpus: float, directory: Path | None = None, wait: float = CORE_WAIT_SECONDS) -> Iterator[list[int]]:
    """Pin the calling thread, and the threads it starts, to `cpus` free cores while the block runs; yields them
    ([] when it does not pin).

    Call it before JAX first uses its CPU backend: XLA starts its threads then, inheriting the mask and sizing its
    pool to it. Called later, XLA's threads already exist and keep running on every core.
    It does not pin a fractional or whole-node request, or when too few cores are free after `wait` seconds
    (another program's trials, or more trials than cores); the trial then runs unpinned, as it would without this.
    """
    if not hasattr(os, "sched_setaffinity") or cpus < 1 or cpus != int(cpus):
        yield []
        return
    allowed = sorted(os.sched_getaffinity(0))
    if int(cpus) >= len(allowed):
        yield []
        return
    deadline = time.monotonic() + wait
    held = _take(allowed, int(cpus), directory or lock_dir())
    while not held and time.monotonic() < deadline:
        time.sleep(0.2)
        held = _take(allowed, int(cpus), directory or lock_dir())
    if not held:
        yield []
        return
    cores = [core for core, _ in held]
    os.sched_setaffinity(0, cores)
    try:
        yield cores
    finally:
        os.sched_setaffinity(0, allowed)
        for _, fd in held:
            os.close(fd)
