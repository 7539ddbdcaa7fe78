"""Where a base policy runs: in the process that acts, or in a Ray actor that acting processes call in batches.

A run names its base policy by a `BasePolicySource` (a file, a device, a serving mode). The source is small and
picklable, so every process that acts (the run's online collector, each Ray rollout worker) opens the base itself:

- 'process': each of them loads its own copy of the policy (tests, single runs, CPU clusters);
- 'node': one Ray actor per node, named by the file's checksum, device and node, shared by every run on that node
  that steers the same file (a GPU node keeps one copy of a large base policy on its device);
- 'gpu': one actor per GPU, named also by the GPU that Ray gave the calling trial, and pinned to that GPU.

Either way `decode` computes the same function on the same device, so the actions are the same
(tests/policies/test_serving.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flowsteer.policies.interface import BasePolicy, BasePolicyError, BasePolicyInfo

Serving = Literal["process", "node", "gpu"]
SERVING_MODES: tuple[Serving, ...] = ("process", "node", "gpu")
NAMESPACE = "flowsteer"  # Ray namespace of the named base-policy actors
ACTOR_PREFIX = "flowsteer-base-"


@dataclass(frozen=True)
class BasePolicySource:
    """A base policy file, the device it runs on and how it is served; `sha256`, once known, is checked by every
    process that opens it, so all of a run's processes steer the same bytes."""

    path: str
    device: str = "cpu"
    serving: Serving = "process"
    sha256: str | None = None
    gpu: str | None = None  # 'gpu' serving: the GPU whose actor serves this run, fixed by the run's own process

    def __post_init__(self) -> None:
        if self.serving not in SERVING_MODES:
            raise BasePolicyError(f"base_serving must be one of {SERVING_MODES}, got {self.serving!r}")


def load_local(source: BasePolicySource) -> BasePolicy:
    """Load the file into this process (torch is the one framework with files today; see docs/base-policies.md)."""
    from flowsteer.policies.torch_policy import load_torch_policy

    policy = load_torch_policy(source.path, device=source.device)
    check_checksum(source, policy.info)
    return policy


def check_checksum(source: BasePolicySource, info: BasePolicyInfo) -> None:
    """Refuse a base whose bytes are not the ones the run started with (`source.sha256`, when known)."""
    if source.sha256 is not None and info.sha256 != source.sha256:
        raise BasePolicyError(
            f"base policy {source.path} changed since this run started (sha256 {(info.sha256 or '?')[:12]}..., "
            f"the run steers {source.sha256[:12]}...): put the original file back, or start a new run for the new one"
        )


class BasePolicyServer:
    """The Ray actor that holds one base policy and decodes batches for every caller on its node or GPU."""

    def __init__(self, source: BasePolicySource) -> None:
        self.policy = load_local(replace(source, serving="process"))
        self.calls = 0

    def info(self) -> BasePolicyInfo:
        return self.policy.info

    def decode(self, observations: np.ndarray, noise: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.policy.decode(observations, noise)

    def num_calls(self) -> int:
        return self.calls

    def is_current(self) -> bool:
        """Whether the file on disk is still the one this actor loaded (a detached actor outlives runs)."""
        from flowsteer.policies.torch_policy import policy_sha256

        try:
            return policy_sha256(self.policy.info.file or "") == self.policy.info.sha256
        except (OSError, ValueError):
            return False


class ActorBasePolicy:
    """A base policy served by a `BasePolicyServer` actor: one remote call per batch."""

    def __init__(self, actor: Any, info: BasePolicyInfo, gpu: str | None, private_ray: bool = False) -> None:
        self.actor = actor
        self.info = info
        self.gpu = gpu  # 'gpu' serving: the GPU of the actor this client reached
        self.private_ray = private_ray  # this process started a private Ray to reach the actor: `close` stops both

    def close(self) -> None:
        """Stop a private Ray this client started (a single run), and its actors with it. On a cluster the process
        joined, the actors stay: other runs may be calling them."""
        import ray

        if self.private_ray and ray.is_initialized():
            release_base_actors()
            ray.shutdown()

    def decode(self, observations: np.ndarray, noise: np.ndarray) -> np.ndarray:
        import ray

        return ray.get(self.actor.decode.remote(np.asarray(observations), np.asarray(noise)))


def actor_name(source: BasePolicySource, node: str, gpu: str | None) -> str:
    """One name per (file, device, node[, GPU]): the file by its absolute path; a stale actor whose file changed
    since it loaded it is replaced when opened (`_actor`)."""
    path = hashlib.sha256(absolute(source.path).encode()).hexdigest()[:16]
    where = f"{node[:16]}" + (f"-gpu{gpu}" if gpu is not None else "")
    return f"{ACTOR_PREFIX}{path}-{source.device.replace(':', '')}-{where}"


def _actor(source: BasePolicySource) -> ActorBasePolicy:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flowsteer.raycluster import ensure_ray

    private = ensure_ray() and not os.environ.get("RAY_ADDRESS")
    node = ray.get_runtime_context().get_node_id()
    gpu = source.gpu if source.serving == "gpu" else None
    if source.serving == "gpu" and gpu is None:
        gpus = ray.get_gpu_ids()
        if not gpus:
            raise BasePolicyError(
                "base_serving 'gpu' puts the base policy on the GPU that Ray gave this trial, but it has none: give "
                "trials a GPU share (a sweep's resources.gpu), or use base_serving 'node'"
            )
        gpu = str(gpus[0])
    # A 'gpu' actor sees exactly its GPU, as cuda:0; Ray would otherwise hide GPUs from an actor that asks for none.
    env = {"CUDA_VISIBLE_DEVICES": gpu, "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"} if gpu is not None else {}
    name = actor_name(source, node, gpu)
    server = ray.remote(BasePolicyServer).options(
        name=name,
        namespace=NAMESPACE,
        get_if_exists=True,  # the first run on the node starts it; the others find it
        lifetime="detached",  # it serves every run on the node, not only the one that started it
        num_cpus=0,  # its callers wait on it while it works: reserving a core would only idle one
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        runtime_env={"env_vars": env} if env else None,
    )
    served = replace(source, device="cuda" if gpu is not None else source.device)
    actor = server.remote(served)
    if not _answer(actor, actor.is_current, source):  # an earlier run's actor, whose file changed since: replace it
        ray.kill(actor)
        _wait_until_gone(name)
        actor = server.remote(served)
    info = _answer(actor, actor.info, source)
    check_checksum(source, info)  # an actor found by name was built for whatever bytes its first caller saw
    return ActorBasePolicy(actor, info, gpu, private)


def _answer(actor: Any, method: Any, source: BasePolicySource) -> Any:
    """The actor's answer; an actor that failed to load the file is stopped and the failure said as a local load
    would say it."""
    import ray

    try:
        return ray.get(method.remote())
    except ray.exceptions.RayActorError as exc:  # its constructor raised: the actor is dead, free its name
        ray.kill(actor)
        cause = getattr(exc, "cause", None) or exc
        raise BasePolicyError(f"the base-policy actor could not load {source.path}: {cause}") from None


def _wait_until_gone(name: str, timeout: float = 30.0) -> None:
    """A killed named actor frees its name a moment later; a new actor may take it only then."""
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
    raise BasePolicyError(f"the stale base-policy actor {name} did not stop within {timeout:.0f} s")


def open_base_policy(source: BasePolicySource) -> BasePolicy:
    """The base policy as this process calls it: its own copy, or a client of the node's (or GPU's) actor."""
    if source.serving == "process":
        return load_local(source)
    return _actor(source)


def release_base_actors() -> int:
    """Stop every base-policy actor of the connected cluster (a sweep calls this when it ends); returns how many."""
    import ray

    if not ray.is_initialized():
        return 0
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    for name in names:
        if name.startswith(ACTOR_PREFIX):
            ray.kill(ray.get_actor(name, namespace=NAMESPACE))
    return sum(name.startswith(ACTOR_PREFIX) for name in names)


def absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())
