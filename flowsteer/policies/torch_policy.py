"""Torch base policies from a file: a TorchScript archive, or a manifest naming a factory and a state dict.

`load_torch_policy(path, device)` reads either form (docs/base-policies.md), applies the normalisation the file
declares around the module, and refuses what DSRL cannot steer before any run starts: a file that does not load,
missing or invalid metadata, a stochastic sampler, a GPU request without a GPU. torch is imported inside the
functions only, so flowsteer itself runs without it (`pip install 'flowsteer[torch]'` adds it).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowsteer.policies.fileformat import METADATA_FILE, PolicyManifest, PolicyMetadata, parse_manifest, parse_metadata
from flowsteer.policies.interface import BasePolicyError, BasePolicyInfo, check_base_policy, check_sampler
from flowsteer.yamlfile import YamlInputError, read_yaml

if TYPE_CHECKING:
    import torch

TORCH_PIN = "torch==2.13.0"  # the version the tests ran with (pyproject.toml extra `torch`)
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # anything else is read as a TorchScript archive


class TorchBasePolicy:
    """A torch module as a BasePolicy: numpy in, numpy out, normalisation as the file declares it."""

    def __init__(self, module: torch.nn.Module, metadata: PolicyMetadata, info: BasePolicyInfo) -> None:
        self.module = module
        self.metadata = metadata
        self.info = info
        obs_norm, act_norm = metadata.observation_normalization, metadata.action_normalization
        self._obs_mean = np.asarray(obs_norm.mean, np.float32) if obs_norm else None
        self._obs_std = np.asarray(obs_norm.std, np.float32) if obs_norm else None
        # per action dimension, repeated for each of the chunk's H actions (time-major, docs/chunking.md)
        self._act_low = np.tile(np.asarray(act_norm.low, np.float32), info.action_chunk) if act_norm else None
        self._act_high = np.tile(np.asarray(act_norm.high, np.float32), info.action_chunk) if act_norm else None

    def decode(self, observations: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(n, obs_dim), (n, noise_dim) -> (n, noise_dim) float32 actions; no gradients, no randomness."""
        import torch

        # torch.from_numpy needs positive strides and a writable array (JAX hands out read-only views): copy
        observations = np.require(observations, np.float32, ["C", "W"])
        noise = np.require(noise, np.float32, ["C", "W"])
        n = observations.shape[0] if observations.ndim == 2 else -1
        if observations.shape != (n, self.info.obs_dim) or noise.shape != (n, self.info.noise_dim):
            raise BasePolicyError(
                f"{self._what()} decodes observations (n, {self.info.obs_dim}) and noise (n, {self.info.noise_dim}), "
                f"got {observations.shape} and {noise.shape}"
            )
        if self._obs_mean is not None:
            observations = ((observations - self._obs_mean) / self._obs_std).astype(np.float32, copy=False)
        # TorchScript's optimising executor profiles the first calls, then runs a fused graph whose rounding differs
        # (seen on an H100: 1.2e-7 between the first and second call): off, every call computes the same numbers.
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            try:
                out = self.module(
                    torch.from_numpy(observations).to(self.info.device), torch.from_numpy(noise).to(self.info.device)
                )
            except RuntimeError as exc:
                raise BasePolicyError(
                    f"{self._what()} failed on observations {observations.shape} and noise {noise.shape}: "
                    f"{_first_line(exc)}. Its forward must take (observations (n, obs_dim), noise (n, noise_dim)) "
                    "as the file declares them."
                ) from None
            actions = out.detach().to("cpu").numpy().astype(np.float32, copy=False)
        if self._act_low is not None:
            actions = self._act_low + (actions + 1.0) / 2.0 * (self._act_high - self._act_low)
        return np.asarray(actions, np.float32)

    def _what(self) -> str:
        return f"base policy {self.info.file}"


def load_torch_policy(path: str | Path, device: str = "cpu", cpu_threads: int | None = 1) -> TorchBasePolicy:
    """The policy in `path` (a TorchScript archive, or a .yaml/.yml/.json manifest) on `device`, checked: its
    declared sampler is deterministic and one probe batch decodes to the declared shape, twice the same.

    On the CPU, torch in this process then uses `cpu_threads` threads (None: torch's default, one per core). A
    base policy decodes batches of a few rows, where one thread is fastest, and torch's pool of spinning threads
    stalls beside JAX's: at batch 1 on two loaded cores, 888 calls/s with one thread against 44 with two
    (benchmarks/bench_base_policy_results.md)."""
    torch = import_torch()
    device = check_device(torch, device)
    if device == "cpu" and cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    path = Path(path).expanduser().resolve()
    what = f"base policy {path}"
    if not path.is_file():
        raise BasePolicyError(
            f"{what} does not exist. Give the path of a file written by `flowsteer base-policy train` (or a "
            "manifest, docs/base-policies.md)."
        )
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        module, metadata, digest = _load_manifest(torch, path, device, what)
    else:
        module, metadata, digest = _load_torchscript(torch, path, device, what)
    check_sampler(metadata.sampler, what)
    info = BasePolicyInfo(
        obs_dim=metadata.obs_dim,
        act_dim=metadata.act_dim,
        action_chunk=metadata.action_chunk,
        framework="torch",
        sampler=metadata.sampler,
        sampler_steps=metadata.sampler_steps,
        file=str(path),
        sha256=digest,
        device=device,
    )
    policy = TorchBasePolicy(module, metadata, info)
    check_base_policy(policy, what)
    return policy


def save_torchscript_policy(module: torch.nn.Module, metadata: PolicyMetadata, path: str | Path) -> str:
    """Write `module` (scripted if it is not yet) and its metadata as a TorchScript archive at `path`, atomically
    (a temporary file renamed into place: an interrupted write leaves nothing); returns the file's sha256."""
    torch = import_torch()
    path = Path(path)
    scripted = script_module(module)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _torchscript_accepted():
            torch.jit.save(scripted, str(temporary), _extra_files={METADATA_FILE: metadata.to_json()})
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return file_sha256(path)


def script_module(module: torch.nn.Module) -> Any:
    """`module` compiled to TorchScript (unchanged if it already is)."""
    torch = import_torch()
    if isinstance(module, torch.jit.ScriptModule):
        return module
    with _torchscript_accepted():
        return torch.jit.script(module)


def file_sha256(*paths: Path) -> str:
    """sha256 of the files' bytes, read one after another into one hash (a manifest, then its state dict)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def policy_sha256(path: str | Path) -> str:
    """The checksum `load_torch_policy` records for `path` as it is on disk now: the archive's bytes, or a
    manifest's bytes followed by its state dict's (a serving actor compares it with what it loaded)."""
    path = Path(path).expanduser().resolve()
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        return file_sha256(path)
    manifest = parse_manifest(read_yaml(path, "base-policy manifest"), f"base policy {path}")
    return file_sha256(path, _weights_path(path, manifest))


def _weights_path(path: Path, manifest: PolicyManifest) -> Path:
    return (path.parent / manifest.state_dict).resolve()


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BasePolicyError(
            f"torch base policies need torch, which is not installed. Install it with "
            f"`pip install 'flowsteer[torch]'` (or `pip install {TORCH_PIN}`)."
        ) from None
    return torch


def check_device(torch: Any, device: str) -> str:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BasePolicyError(
            f"device {device!r} is not a torch device ({_first_line(exc)}); use 'cpu' or 'cuda'"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise BasePolicyError(
                f"device {device!r} was requested but torch {torch.__version__} sees no GPU "
                "(torch.cuda.is_available() is False). Use device 'cpu', or run where a GPU and a CUDA build of "
                "torch are installed."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise BasePolicyError(
                f"device {device!r} was requested but torch sees {torch.cuda.device_count()} GPU(s); use cuda:0 … "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif parsed.type != "cpu":
        raise BasePolicyError(f"device {device!r}: base policies run on 'cpu' or 'cuda' (e.g. 'cuda:0')")
    return str(parsed)


# ------------------------------------------------------------------------------------------------ internals


@contextlib.contextmanager
def _torchscript_accepted() -> Iterator[None]:
    """torch 2.13 deprecates torch.jit.script/save/load in favour of torch.export; TorchScript is still the one
    self-contained format that runs a Python-free forward with a loop (docs/base-policies.md#torchscript), so the
    format uses it knowingly and its users are not warned on every load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        yield


def _load_torchscript(torch: Any, path: Path, device: str, what: str) -> tuple[Any, PolicyMetadata, str]:
    extra = {METADATA_FILE: ""}
    try:
        with _torchscript_accepted():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError, ValueError or its own errors for a file it cannot read
        raise BasePolicyError(
            f"{what} is not a TorchScript archive that torch {torch.__version__} can load ({_first_line(exc)}). "
            "Save the sampler with torch.jit.save(torch.jit.script(module), path, _extra_files={'flowsteer.json': "
            "...}) (docs/base-policies.md), or give a manifest (.yaml) that names a factory and a state dict."
        ) from None
    raw = extra[METADATA_FILE]
    if not raw:
        raise BasePolicyError(
            f"{what} holds no {METADATA_FILE}: its shapes and sampler are undeclared. Save it with "
            f"_extra_files={{'{METADATA_FILE}': json}} holding the fields of docs/base-policies.md#metadata."
        )
    metadata = parse_metadata(raw, what)
    return module.eval(), metadata, file_sha256(path)


def _load_manifest(torch: Any, path: Path, device: str, what: str) -> tuple[Any, PolicyMetadata, str]:
    try:
        values = read_yaml(path, "base-policy manifest")
    except YamlInputError as exc:
        raise BasePolicyError(f"{exc}. Fix the manifest (docs/base-policies.md#manifest).") from None
    manifest = parse_manifest(values, what)
    weights = _weights_path(path, manifest)
    if not weights.is_file():
        raise BasePolicyError(
            f"{what} names state_dict {manifest.state_dict!r}, but {weights} does not exist. Give its path relative "
            "to the manifest's directory."
        )
    factory = _import_factory(manifest.entry_point, what)
    try:
        module = factory(**manifest.kwargs)
    except Exception as exc:  # a user's factory may raise anything for wrong kwargs
        raise BasePolicyError(
            f"{what}: {manifest.entry_point}(**kwargs) raised {type(exc).__name__}: {_first_line(exc)}. Fix the "
            "manifest's kwargs to match the factory's signature."
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise BasePolicyError(
            f"{what}: {manifest.entry_point} returned {type(module).__name__}, not a torch.nn.Module; name a factory "
            "that builds the module."
        )
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt file, pickle with objects weights_only refuses, ...
        raise BasePolicyError(
            f"{what}: state dict {weights} does not load with torch.load(weights_only=True) ({_first_line(exc)}). "
            "Save it with torch.save(module.state_dict(), path)."
        ) from None
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise BasePolicyError(
            f"{what}: state dict {weights} does not fit the module {manifest.entry_point} builds: "
            f"{' '.join(str(exc).split())[:500]}. Give the kwargs the weights were trained with, or the matching "
            "state dict."
        ) from None
    return module.to(device).eval(), manifest.metadata(), file_sha256(path, weights)


def _import_factory(entry_point: str, what: str) -> Any:
    module_name, _, name = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the imported module raises at import time
        raise BasePolicyError(
            f"{what}: entry point {entry_point!r} does not import ({type(exc).__name__}: {_first_line(exc)}). "
            "Install the package that defines it, or correct the module path (package.module:factory)."
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise BasePolicyError(
            f"{what}: entry point {entry_point!r}: module {module_name} has no callable {name!r}. Name the function "
            "or class that builds the torch module."
        )
    return factory


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
