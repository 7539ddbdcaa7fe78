"""Core leases for trials: real affinity masks and real flock'd lock files, no Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from flowsteer.sweeps.cores import pinned_cores

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 or more cores"
)

HOLD = """
import sys, time
from pathlib import Path
from flowsteer.sweeps.cores import pinned_cores
with pinned_cores(1, Path(sys.argv[1])) as cores:
    print(cores[0] if cores else -1, flush=True)
    time.sleep(600)
"""


def test_a_lease_pins_the_process_and_gives_the_cores_back(tmp_path):
    everything = os.sched_getaffinity(0)
    with pinned_cores(1, tmp_path) as cores:
        assert len(cores) == 1 and os.sched_getaffinity(0) == set(cores)
    assert os.sched_getaffinity(0) == everything
    with pinned_cores(1, tmp_path) as again:
        assert again == cores  # released, so the same first free core


def _holder(directory) -> tuple[subprocess.Popen, int]:
    """Another process (a trial) that leases one core and keeps it; returns it and its core (-1: none)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_concurrent_trials_get_different_cores_until_none_is_free(tmp_path):
    n = len(os.sched_getaffinity(0))
    holders = [_holder(tmp_path) for _ in range(n)]
    try:
        assert sorted(core for _, core in holders) == sorted(os.sched_getaffinity(0))
        with pinned_cores(1, tmp_path, wait=0.5) as none_left:
            assert none_left == []  # runs unpinned rather than sharing a core
    finally:
        for proc, _ in holders:
            proc.kill()
            proc.wait()


def test_requests_that_are_not_whole_cores_or_the_whole_node_are_not_pinned(tmp_path):
    everything = os.sched_getaffinity(0)
    for cpus in (0.5, 1.5, len(everything), len(everything) + 1):
        with pinned_cores(cpus, tmp_path) as cores:
            assert cores == [] and os.sched_getaffinity(0) == everything


def test_a_killed_trial_does_not_keep_its_core(tmp_path):
    holder, held = _holder(tmp_path)
    try:
        assert held >= 0
        with pinned_cores(1, tmp_path) as cores:
            assert cores and cores[0] != held
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pinned_cores(1, tmp_path) as cores:
        assert cores == [min(os.sched_getaffinity(0))]  # the kernel dropped the dead process's lock


def test_a_trial_waits_for_a_core_that_another_trial_is_letting_go(tmp_path):
    n = len(os.sched_getaffinity(0))
    holders = [_holder(tmp_path) for _ in range(n)]
    try:
        # Tune starts the next trial as soon as one ends; the ending one frees its core a moment later.
        proc, freed = holders[0]
        threading.Timer(1.0, proc.kill).start()
        with pinned_cores(1, tmp_path, wait=10.0) as cores:
            assert cores == [freed]
    finally:
        for proc, _ in holders:
            proc.kill()
            proc.wait()
