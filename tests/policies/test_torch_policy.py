"""Loading torch base policies (flowsteer.policies.torch_policy): what loads behaves as the file declares, and
every file DSRL cannot steer is refused with a message naming the problem and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowsteer.policies.fileformat import METADATA_FILE, PolicyMetadata
from flowsteer.policies.interface import BasePolicy, BasePolicyError
from flowsteer.policies.torch_policy import file_sha256, load_torch_policy, save_torchscript_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def observations(smoke_data) -> np.ndarray:
    """Observations of the data the policy was trained on, from different episodes."""
    return smoke_data["observations"][::150][:6]


def _noise(policy, rows: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, policy.info.noise_dim)).astype(np.float32)


class EchoObservations(torch.nn.Module):
    """actions = the first noise_dim (normalised) observations: normalisation can be checked by hand."""

    def __init__(self, noise_dim: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim

    def forward(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return observations[:, : self.noise_dim] + 0.0 * noise


class DrawsItsOwnNoise(torch.nn.Module):
    """A sampler with randomness inside (like DDPM sampling): not a function of the chosen noise."""

    def forward(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(noise + torch.randn_like(noise))


class ChangesAfterItsSecondCall(torch.nn.Module):
    """A module whose numbers change once it has run twice, as a JIT that swaps in an optimised graph after
    profiling its first calls (seen on an H100 with TorchScript's fuser)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(noise) + (1e-7 if self.calls > 2 else 0.0)


def _metadata(**fields) -> PolicyMetadata:
    values = {"format": "flowsteer-base-policy", "version": 1, "framework": "torch", "obs_dim": 2, "act_dim": 2,
              "action_chunk": 1, "sampler": "ddim", "sampler_steps": 1} | fields  # fmt: skip
    return PolicyMetadata.model_validate(values)


def _manifest(tmp_path: Path, torch_policy, **fields) -> Path:
    torch.save(torch_policy.sampler.state_dict(), tmp_path / "weights.pt")
    manifest = torch_policy.metadata.model_dump(mode="json") | {
        "entry_point": "flowsteer.policies.ddpm:ddim_sampler",
        "kwargs": torch_policy.factory_kwargs,
        "state_dict": "weights.pt",
    }
    (tmp_path / "policy.json").write_text(json.dumps(manifest | fields))
    return tmp_path / "policy.json"


# ------------------------------------------------------------------------------------------------ what loads


def test_loaded_policy_gives_the_same_actions_for_the_same_noise(torch_policy_file: Path, observations) -> None:
    policy = load_torch_policy(torch_policy_file)
    noise = _noise(policy)
    np.testing.assert_array_equal(policy.decode(observations, noise), policy.decode(observations, noise))


def test_loaded_policy_gives_different_actions_for_different_noise(torch_policy_file: Path, observations) -> None:
    policy = load_torch_policy(torch_policy_file)
    noise, other = _noise(policy), _noise(policy, seed=1)
    difference = np.abs(policy.decode(observations, noise) - policy.decode(observations, other))
    assert difference.max(axis=1).min() > 1e-3  # every row moved


def test_loaded_policy_equals_the_in_memory_sampler(torch_policy, torch_policy_file: Path, observations) -> None:
    policy = load_torch_policy(torch_policy_file)
    noise = _noise(policy)
    norm = torch_policy.metadata.observation_normalization
    normalised = (observations - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    with torch.no_grad():
        expected = torch_policy.sampler(torch.from_numpy(normalised), torch.from_numpy(noise)).numpy()
    np.testing.assert_array_equal(policy.decode(observations, noise), expected)


def test_loaded_policy_is_a_base_policy_with_its_provenance(torch_policy_file: Path, smoke_data) -> None:
    policy = load_torch_policy(torch_policy_file)
    assert isinstance(policy, BasePolicy)
    info = policy.info
    assert (info.obs_dim, info.act_dim, info.action_chunk) == (
        smoke_data["observations"].shape[1], smoke_data["actions"].shape[1], 1)  # fmt: skip
    assert (info.framework, info.sampler, info.sampler_steps, info.device) == ("torch", "ddim", 5, "cpu")
    assert info.file == str(torch_policy_file.resolve())
    assert info.sha256 == file_sha256(torch_policy_file)


def test_observation_normalisation_is_applied_before_the_module(tmp_path: Path) -> None:
    path = tmp_path / "echo.pt"
    norm = {"mean": [1.0, 2.0], "std": [2.0, 4.0]}
    save_torchscript_policy(EchoObservations(2), _metadata(observation_normalization=norm), path)
    actions = load_torch_policy(path).decode(np.array([[3.0, 10.0]], np.float32), np.zeros((1, 2), np.float32))
    np.testing.assert_allclose(actions, [[1.0, 2.0]])  # (3 - 1) / 2, (10 - 2) / 4


def test_action_normalisation_maps_the_unit_range_to_the_declared_bounds(tmp_path: Path) -> None:
    path = tmp_path / "echo.pt"
    bounds = {"low": [0.0, -2.0], "high": [10.0, 2.0]}
    save_torchscript_policy(EchoObservations(2), _metadata(action_normalization=bounds), path)
    actions = load_torch_policy(path).decode(np.array([[-1.0, 0.5]], np.float32), np.zeros((1, 2), np.float32))
    np.testing.assert_allclose(actions, [[0.0, 1.0]])  # -1 -> low; 0.5 -> -2 + 0.75 * 4


def test_manifest_policy_gives_the_same_actions_as_the_torchscript_file(
    torch_policy, torch_policy_file: Path, tmp_path: Path, observations
) -> None:
    from_manifest = load_torch_policy(_manifest(tmp_path, torch_policy))
    from_archive = load_torch_policy(torch_policy_file)
    noise = _noise(from_archive)
    np.testing.assert_array_equal(from_manifest.decode(observations, noise), from_archive.decode(observations, noise))
    assert from_manifest.info.sha256 == file_sha256(tmp_path / "policy.json", tmp_path / "weights.pt")


# ------------------------------------------------------------------------------------------------ what is refused


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BasePolicyError, match=r"does not exist.*flowsteer base-policy train"):
        load_torch_policy(tmp_path / "nothing.pt")


def test_file_that_is_not_torchscript_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.pt").write_bytes(b"not a zip archive at all")
    with pytest.raises(BasePolicyError, match=r"not a TorchScript archive.*torch.jit.save"):
        load_torch_policy(tmp_path / "policy.pt")


def test_truncated_archive_is_refused(torch_policy_file: Path, tmp_path: Path) -> None:
    data = torch_policy_file.read_bytes()
    (tmp_path / "policy.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(BasePolicyError, match="not a TorchScript archive"):
        load_torch_policy(tmp_path / "policy.pt")


def test_archive_without_metadata_is_refused(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(EchoObservations(2)), str(tmp_path / "policy.pt"))
    with pytest.raises(BasePolicyError, match=f"holds no {METADATA_FILE}.*_extra_files"):
        load_torch_policy(tmp_path / "policy.pt")


def test_invalid_metadata_is_refused_naming_the_field(tmp_path: Path) -> None:
    metadata = _metadata().model_dump(mode="json") | {"obs_dim": 0}
    extra = {METADATA_FILE: json.dumps(metadata)}
    torch.jit.save(torch.jit.script(EchoObservations(2)), str(tmp_path / "policy.pt"), _extra_files=extra)
    with pytest.raises(BasePolicyError, match="obs_dim must be an integer >= 1, got 0"):
        load_torch_policy(tmp_path / "policy.pt")


def test_declared_stochastic_sampler_is_refused(tmp_path: Path) -> None:
    save_torchscript_policy(EchoObservations(2), _metadata(sampler="ddpm"), tmp_path / "policy.pt")
    with pytest.raises(BasePolicyError, match=r"sampler 'ddpm', which draws its own noise.*eta = 0"):
        load_torch_policy(tmp_path / "policy.pt")


def test_module_that_draws_its_own_noise_is_refused(tmp_path: Path) -> None:
    save_torchscript_policy(DrawsItsOwnNoise(), _metadata(), tmp_path / "policy.pt")
    with pytest.raises(BasePolicyError, match="different actions for the same observations and noise"):
        load_torch_policy(tmp_path / "policy.pt")


def test_module_whose_actions_change_after_its_second_call_is_refused(tmp_path: Path) -> None:
    save_torchscript_policy(ChangesAfterItsSecondCall(), _metadata(), tmp_path / "policy.pt")
    with pytest.raises(BasePolicyError, match="different actions for the same observations and noise"):
        load_torch_policy(tmp_path / "policy.pt")


def test_module_that_does_not_fit_its_declared_shapes_is_refused(torch_policy, tmp_path: Path) -> None:
    wrong = torch_policy.metadata.model_copy(update={"obs_dim": torch_policy.metadata.obs_dim + 1,
                                                "observation_normalization": None})  # fmt: skip
    save_torchscript_policy(torch_policy.sampler, wrong, tmp_path / "policy.pt")
    with pytest.raises(BasePolicyError, match=r"failed on observations.*must take"):
        load_torch_policy(tmp_path / "policy.pt")


def test_entry_point_that_does_not_import_is_refused(torch_policy, tmp_path: Path) -> None:
    path = _manifest(tmp_path, torch_policy, entry_point="no_such_package.models:build")
    with pytest.raises(BasePolicyError, match=r"'no_such_package.models:build' does not import.*Install the package"):
        load_torch_policy(path)


def test_entry_point_that_is_not_callable_is_refused(torch_policy, tmp_path: Path) -> None:
    path = _manifest(tmp_path, torch_policy, entry_point="flowsteer.policies.ddpm:TIME_DIM")
    with pytest.raises(BasePolicyError, match="has no callable 'TIME_DIM'"):
        load_torch_policy(path)


def test_state_dict_that_does_not_fit_the_module_is_refused(torch_policy, tmp_path: Path) -> None:
    path = _manifest(tmp_path, torch_policy, kwargs=torch_policy.factory_kwargs | {"hidden_dims": [16, 16, 16]})
    with pytest.raises(BasePolicyError, match=r"does not fit the module.*kwargs the weights were trained with"):
        load_torch_policy(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_request_without_a_gpu_is_refused(torch_policy_file: Path) -> None:
    with pytest.raises(BasePolicyError, match=r"device 'cuda'.*is_available\(\) is False.*Use device 'cpu'"):
        load_torch_policy(torch_policy_file, device="cuda")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_missing_torch_is_refused_with_the_install_command(torch_policy_file: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # what Python does for a package that is not installed
        "from flowsteer.policies.torch_policy import load_torch_policy\n"
        f"load_torch_policy({str(torch_policy_file)!r})\n"
    )
    result = _python(code)
    assert result.returncode != 0
    assert "BasePolicyError" in result.stderr
    assert "pip install 'flowsteer[torch]'" in result.stderr and "torch==2.13.0" in result.stderr


def test_importing_the_loader_does_not_import_torch() -> None:
    result = _python("import sys, flowsteer.policies.torch_policy; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
