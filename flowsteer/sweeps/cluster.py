"""The Ray cluster a sweep runs on: a private local one by default, or an existing one (``--address``).

A local cluster gets its own temporary directory, derived from the sweep directory, so a sweep never joins
another cluster by accident and the processes a killed driver leaves behind can be found and stopped when
the sweep is resumed (Ray's agents outlive a SIGKILLed driver and ignore SIGTERM). ``ray stop`` is never
used: it would stop every cluster on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flowsteer.sweeps.spec import Resources, SweepSpec, SweepSpecError


class SweepBusyError(SweepSpecError):
    """Another driver is running the same sweep."""


@dataclass
class ClusterInfo:
    address: str  # 'local' or the address joined
    cpus: float
    gpus: float
    nodes: int
    largest_node_cpus: float
    cleaned: list[int]  # pids of processes a previous driver left behind, stopped before starting


def local_temp_dir(sweep_dir: Path) -> Path:
    """A short, per-sweep temp dir (Ray puts unix sockets in it, whose paths are limited to ~107 bytes)."""
    digest = hashlib.sha256(str(sweep_dir.absolute()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"fsray-{os.getuid()}-{digest}"


def worker_env(resources: Resources) -> dict[str, str]:
    """Environment of every trial process: CPU-only JAX without GPUs; a JAX memory cap matching a GPU share."""
    env = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"}
    fraction = resources.jax_memory_fraction()
    if fraction is None:
        env["JAX_PLATFORMS"] = "cpu"
    else:
        # The new name; setting the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION as well is an error in jaxlib 0.10.
        env["XLA_CLIENT_MEM_FRACTION"] = f"{fraction}"
    return env


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep directory; the lock dies with its process, so a killed driver never blocks a resume."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / ".driver.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise SweepBusyError(
                f"sweep {sweep_dir.name} is already running (driver pid {owner}); wait for it or stop it first."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def processes_using(directory: Path) -> list[int]:
    """Live processes whose command line or open files point into ``directory`` (Linux /proc)."""
    needle = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if _is_zombie(entry):
                continue
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
                continue
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(needle):
                        found.append(int(entry.name))
                        break
        except OSError:  # the process ended, or is not ours to inspect
            continue
    return sorted(found)


def _is_zombie(proc: Path) -> bool:
    stat = (proc / "stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def stop_leftovers(temp_dir: Path) -> list[int]:
    """SIGKILL what a dead driver's local cluster left running in ``temp_dir`` (call only under the sweep lock)."""
    pids = processes_using(temp_dir) if temp_dir.exists() else []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


@contextlib.contextmanager
def connect(spec: SweepSpec, address: str | None = None) -> Iterator[ClusterInfo]:
    """Start the sweep's private local cluster, or join ``address``; check it can host one trial."""
    import ray

    env = worker_env(spec.resources)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("RAY_", "TUNE_"))})  # read by the driver too
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the sweep's own live summary replaces Tune's tables
    cleaned: list[int] = []
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
    else:
        temp_dir = local_temp_dir(spec.directory)
        cleaned = stop_leftovers(temp_dir)
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=str(temp_dir),
            object_store_memory=1_000_000_000,
            runtime_env={"env_vars": env},
        )
    try:
        info = _describe(address or "local", cleaned)
        _check_fits(spec.resources, info)
        yield info
    finally:
        ray.shutdown()
        if not address:
            _reap(local_temp_dir(spec.directory))


def _reap(temp_dir: Path, timeout: float = 10.0) -> None:
    """ray.shutdown() signals the private cluster's processes but does not wait for them to exit; wait, then
    SIGKILL stragglers, so that nothing of the cluster outlives the sweep (a CI run once caught a Ray process
    still exiting after run_sweep had returned)."""
    deadline = time.monotonic() + timeout
    while processes_using(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop_leftovers(temp_dir)


def _describe(address: str, cleaned: list[int]) -> ClusterInfo:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    largest = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    return ClusterInfo(address, total.get("CPU", 0.0), total.get("GPU", 0.0), len(nodes), largest, cleaned)


def _check_fits(resources: Resources, info: ClusterInfo) -> None:
    """A trial asking for more than any node has would wait forever (Tune only logs a warning)."""
    if resources.gpu > 0 and info.gpus < min(resources.gpu, 1.0):
        raise SweepSpecError(
            f"resources.gpu is {resources.gpu:g} per trial but the cluster at {info.address} has no GPU "
            f"({info.gpus:g} in total). Set resources.gpu: 0 (JAX then runs on the CPU), or join a GPU cluster "
            f"with --address."
        )
    if resources.cpu > info.largest_node_cpus:
        raise SweepSpecError(
            f"resources.cpu is {resources.cpu:g} per trial but the largest node of the cluster at {info.address} "
            f"has {info.largest_node_cpus:g} CPUs; lower resources.cpu."
        )
