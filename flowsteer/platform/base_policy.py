"""The base policies a DSRL run steers, as the run loop loads them before any work.

- `base_run`: the BC flow policy of a finished earlier run, read from its last checkpoint, so one pretrained
  policy can be steered by many runs. Any learner that can lend a BC flow (`Algorithm.base_policy`: flow_bc, fql,
  ifql, dsrl_na, dsrl_sac) can be the base run. It is one implementation of the base-policy interface
  (flowsteer.policies.interface), and the steering learner also decodes it inside its compiled program.
- `base_policy`: a file (a torch diffusion or flow policy; docs/base-policies.md), opened where the run's
  `base_serving` says and checked against the task's shapes (`open_external_base`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flowsteer.algorithms.flow_bc import decode
from flowsteer.algorithms.registry import ALGORITHMS, CHUNK_FIELD, get_algorithm, make_config
from flowsteer.algorithms.steering import external_base
from flowsteer.datasets.catalog import parse_task
from flowsteer.datasets.npzfile import sha256
from flowsteer.platform import checkpoint
from flowsteer.platform.spec import RunSpec, RunSpecError
from flowsteer.policies.interface import BasePolicy, BasePolicyError, BasePolicyInfo, check_fits
from flowsteer.policies.serving import BasePolicySource, absolute, open_base_policy
from flowsteer.rundir import CONFIG, STATUS, RunFileError, read_json


@dataclass(frozen=True)
class FlowBasePolicy:
    """A pretrained BC flow of an earlier run: its network, its parameters (host arrays), where they came from,
    and the base-policy interface (`info`, `decode`: Euler steps from the given noise)."""

    network: Any
    params: Any
    provenance: dict[str, Any]
    info: BasePolicyInfo
    _decode: Any = field(default=None, repr=False, compare=False)

    def decode(self, observations: np.ndarray, noise: np.ndarray) -> np.ndarray:
        fn = self._decode or jax.jit(partial(decode, self.network, steps=self.info.sampler_steps))
        object.__setattr__(self, "_decode", fn)  # compiled once per policy
        return np.asarray(fn(self.params, np.asarray(observations, np.float32), np.asarray(noise, np.float32)))


def load_base_policy(
    run_dir: str | Path, obs_dim: int, act_dim: int, action_chunk: int = 1, flow_steps: int | None = None
) -> FlowBasePolicy:
    """The BC flow of the finished run in `run_dir`, for observations and actions of the given sizes and chunks of
    `action_chunk` actions (a flow over chunks of another length decodes noise of another size), decoded with
    `flow_steps` Euler steps: the steering learner's own (None: the base run's)."""
    path = Path(run_dir).expanduser().absolute()
    try:
        config = read_json(path / CONFIG)
        state = (read_json(path / STATUS) or {}).get("state", "new")
    except RunFileError as exc:
        raise RunSpecError(f"base_run {path}: {exc}") from None
    if config is None:
        raise RunSpecError(f"base_run {path} is not a flowsteer run directory (no config.json)")
    if state != "finished":
        raise RunSpecError(f"base_run {path} is {state}, not finished: steer a policy that no longer changes")
    algo = config["run"]["algo"]
    alg = get_algorithm(algo)
    if config["algo_config"].get("base_policy"):
        raise RunSpecError(
            f"base_run {path} steered the base policy file {config['algo_config']['base_policy']}, which flowsteer "
            "does not hold as a flow: steer that file directly (hyperparameter base_policy)"
        )
    if alg.base_policy is None:
        capable = [name for name, a in ALGORITHMS.items() if a.base_policy is not None]
        raise RunSpecError(f"base_run {path} is a {algo} run, which has no BC flow; use a run of {capable}")
    base_chunk = int(config["run"].get(CHUNK_FIELD, 1))  # runs made before chunking have none: single steps
    if base_chunk != action_chunk:
        raise RunSpecError(
            f"base_run {path} trained its BC flow with action_chunk {base_chunk} ({base_chunk} actions per noise), "
            f"but this run has action_chunk {action_chunk}: its noise would not fit that flow. Run this one with "
            f"action_chunk {base_chunk}, or steer a base run trained with action_chunk {action_chunk}."
        )
    overrides = {k: v for k, v in config["algo_config"].items() if k != CHUNK_FIELD}  # a run setting, not a knob
    algo_config = make_config(algo, overrides=overrides, action_chunk=base_chunk)
    found = checkpoint.candidates(path / "checkpoints")
    if not found:
        raise RunSpecError(f"base_run {path} has no checkpoint")
    last = found[0]  # the finished policy; an earlier checkpoint would silently steer another one
    try:
        checkpoint.verify(last)
    except RunFileError as exc:
        raise RunSpecError(
            f"base_run {path}: its final checkpoint is unreadable: {exc} Restore it, or train the base run again."
        ) from None
    template = alg.init(algo_config, obs_dim, act_dim * base_chunk, jax.random.PRNGKey(0))
    try:
        trees, meta = checkpoint.load(last, {"state": template})
    except ValueError as exc:
        raise RunSpecError(f"base_run {path} does not fit this task's observations and actions: {exc}") from None
    network, params = alg.base_policy(algo_config, trees["state"])
    provenance = {
        "run_dir": str(path),
        "run_id": config["run_id"],
        "algo": algo,
        "task": config["run"]["task"],
        "checkpoint": last.name,
        "step": meta["step"],
        "arrays_sha256": sha256(last / "arrays.npz"),
    }
    info = BasePolicyInfo(
        obs_dim, act_dim, base_chunk, "flowsteer", "euler", flow_steps or int(getattr(algo_config, "flow_steps", 10)),
        file=str(last / "arrays.npz"), sha256=provenance["arrays_sha256"],
    )  # fmt: skip
    return FlowBasePolicy(network, params, provenance, info)


def open_external_base(
    path: str, device: str, serving: str, obs_dim: int, act_dim: int, action_chunk: int, expected_sha256: str | None
) -> tuple[BasePolicySource, BasePolicy]:
    """Open the base policy file `path` for a run on a task of these shapes, before any work: a file that does not
    load, does not fit, is not deterministic, or (on resume) is not the file the run started with, is a
    RunSpecError that names the problem and the fix. Returns the source every acting process opens (with the
    checksum they must all see) and this process's handle."""
    what = f"base_policy {path}"
    try:
        source = BasePolicySource(absolute(path), device, serving, expected_sha256)  # type: ignore[arg-type]
        policy = open_base_policy(source)
        check_fits(policy.info, obs_dim, act_dim, action_chunk, what)
    except BasePolicyError as exc:
        raise _refusal(what, exc) from None
    # Every acting process opens the same bytes, and with 'gpu' serving the actor of this process's GPU.
    return replace(source, sha256=policy.info.sha256, gpu=getattr(policy, "gpu", None)), policy


def _refusal(what: str, exc: BasePolicyError) -> RunSpecError:
    """A base-policy refusal as a run's input error, naming the hyperparameter unless the message already does."""
    return RunSpecError(str(exc) if str(exc).startswith("base") else f"{what}: {exc}")


def check_external_bases(specs: Iterable[RunSpec]) -> int:
    """Open every base policy file these runs steer (once per file, in this process, on the CPU) and check it fits
    each run's task and chunk length: a sweep refuses a bad file before it launches anything. Returns how many
    files were checked."""
    opened: dict[str, BasePolicy] = {}
    for spec in specs:
        path = external_base(get_algorithm(spec.algo).steering, spec.algo_config())
        if path is None:
            continue
        what = f"base_policy {path} (run {spec.run_id})"
        try:  # on the CPU: the driver may have no GPU where the trials do; each trial checks its device
            if path not in opened:
                opened[path] = open_base_policy(BasePolicySource(absolute(path)))
            family = parse_task(spec.task).dataset.family
            check_fits(opened[path].info, family.obs_dim, family.act_dim, spec.action_chunk, what)
        except BasePolicyError as exc:
            raise _refusal(what, exc) from None
    return len(opened)
