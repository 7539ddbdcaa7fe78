"""The Ray cluster a sweep runs on: a private local one by default, or an existing one (``--address``).

A local cluster gets its own temporary directory, derived from the sweep directory, so a sweep never joins
another cluster by accident and the processes a killed driver leaves behind can be found and stopped when
the sweep is resumed (Ray's agents outlive a SIGKILLed driver and ignore SIGTERM). ``ray stop`` is never
used: it would stop every cluster on the machine.

The private cluster is private on the network too: every Ray server listens on the loopback interface only
(Ray's single-machine mode, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which also binds the autoscaler's metrics
endpoint to 127.0.0.1); its token authentication uses a per-sweep token in the temp directory, which is
owner-only (0700; the token 0600) and removed when the sweep ends. Ray makes its own directories world-writable,
so it gets a subdirectory: nobody else can reach it through the owner-only parent. ``~/.ray/auth_token`` is
never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flowsteer.policies.serving import release_base_actors
from flowsteer.rundir import exclusive
from flowsteer.sweeps.spec import Resources, SweepSpec, SweepSpecError

TOKEN_FILE = "auth_token"
RAY_SUBDIR = "ray"  # Ray's temp dir inside the private one (Ray chmods its own to 0777)
ADDRESS_TIMEOUT = 10.0  # seconds to wait for a TCP answer from --address before calling it unreachable


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

    def busy(owner: str) -> SweepBusyError:
        return SweepBusyError(f"sweep {sweep_dir.name} is already running ({owner}); wait for it or stop it first.")

    with exclusive(sweep_dir / ".driver.lock", busy):
        yield


def private_temp_dir(sweep_dir: Path) -> Path:
    """The sweep's Ray temp dir, created owner-only; refused when someone else made it or can read it."""
    path = local_temp_dir(sweep_dir)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SweepSpecError(
            f"{path} (this sweep's Ray directory) exists but is not a directory of this user: another user or "
            f"program made it. Remove it, or run the sweep from another storage."
        )
    if info.st_mode & 0o077:  # made by an earlier flowsteer with the default umask: ours, so tighten it
        path.chmod(0o700)
    return path


def _write_token(temp_dir: Path) -> Path:
    """A fresh random cluster token, readable by its owner only."""
    path = temp_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


def processes_using(directory: Path) -> list[int]:
    """Live processes of this user whose command line or open files point into ``directory`` (Linux /proc)."""
    needle = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid() or _is_zombie(entry):
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
    with contextlib.ExitStack() as stack:
        if address:
            _check_reachable(address)
            stack.enter_context(_networked())
            try:
                ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                         configure_logging=False)  # fmt: skip
            except ConnectionError as exc:
                raise SweepSpecError(f"cannot join the Ray cluster at {address}: {exc}") from None
        else:
            temp_dir = private_temp_dir(spec.directory)
            cleaned = stop_leftovers(temp_dir)
            stack.enter_context(_loopback_only(_write_token(temp_dir)))
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=str(temp_dir / RAY_SUBDIR),
                object_store_memory=1_000_000_000,
                runtime_env={"env_vars": env},
            )
        try:
            info = _describe(address or "local", cleaned)
            _check_fits(spec.resources, info)
            yield info
        finally:
            if not address:  # on a cluster the sweep joined, other runs may still call them
                release_base_actors()
            ray.shutdown()
            if not address:
                _reap(temp_dir)
                shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _loopback_only(token: Path) -> Iterator[None]:
    """Environment for starting the private cluster: every server on 127.0.0.1, token auth with ``token``.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, at import, into ray_constants.ENABLE_RAY_CLUSTER; the
    constant is set too, so that the choice holds whenever ray was imported (tests/sweeps checks the sockets).
    """
    settings = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    with _environment(settings, cluster_mode=False):
        yield


@contextlib.contextmanager
def _networked() -> Iterator[None]:
    """Joining a cluster: Ray's usual node addresses (an earlier private cluster in this process set loopback)."""
    with _environment({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": None}, cluster_mode=True):
        yield


@contextlib.contextmanager
def _environment(settings: dict[str, str | None], cluster_mode: bool) -> Iterator[None]:
    """Set (None: unset) environment variables Ray reads, and make this process's Ray see them; undo after."""
    from ray._private import ray_constants

    saved = {key: os.environ.get(key) for key in settings}
    saved_mode = ray_constants.ENABLE_RAY_CLUSTER
    _set_environment(settings)
    ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_mode
        _set_environment(saved)


def _set_environment(settings: dict[str, str | None]) -> None:
    from ray._raylet import AuthenticationTokenLoader, Config

    for key, value in settings.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    # Ray caches its settings (the auth mode) and the token it loaded; reload both, as ray.init does itself
    # when it turns token authentication on.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _check_reachable(address: str) -> None:
    """One TCP connection to ``address`` (host:port) before Ray's own minutes of retries; 'auto' is Ray's to find."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto', 'ray://...': Ray resolves and reports these itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT):
            pass
    except OSError as exc:
        raise SweepSpecError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}). Check the address (`ray status` on the "
            f"head node prints it) and that this machine can reach it, or leave out --address to run the sweep on "
            f"a private local cluster."
        ) from None


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
