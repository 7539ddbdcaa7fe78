"""The torch DDPM trainer and its DDIM sampler (flowsteer.policies.ddpm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowsteer.policies.ddpm import (
    STD_FLOOR,
    DDIMSampler,
    alphas_cumprod,
    chunk_starts,
    ddim_sampler,
    train_ddpm_policy,
)

QUICK = {"hidden_dims": (32, 32, 32), "batch_size": 32, "steps": 20}


def _state(module) -> dict:
    return {name: value.clone() for name, value in module.state_dict().items()}


def test_same_seed_gives_the_same_weights(smoke_data) -> None:
    arrays = (smoke_data["observations"], smoke_data["actions"], smoke_data["terminals"])
    first = _state(train_ddpm_policy(*arrays, seed=3, **QUICK).sampler)
    second = _state(train_ddpm_policy(*arrays, seed=3, **QUICK).sampler)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_chunked_training_decodes_chunks_of_h_actions(smoke_data) -> None:
    arrays = (smoke_data["observations"], smoke_data["actions"], smoke_data["terminals"])
    trained = train_ddpm_policy(*arrays, action_chunk=2, **QUICK)
    obs_dim, act_dim = smoke_data["observations"].shape[1], smoke_data["actions"].shape[1]
    observations = torch.zeros(3, obs_dim)
    actions = trained.sampler(observations, torch.randn(3, 2 * act_dim))
    assert actions.shape == (3, 2 * act_dim)
    assert (trained.metadata.action_chunk, trained.metadata.act_dim) == (2, act_dim)


def test_trainer_declares_the_observation_normalisation_of_its_data(torch_policy, smoke_data) -> None:
    norm = torch_policy.metadata.observation_normalization
    observations = smoke_data["observations"]
    np.testing.assert_allclose(norm.mean, observations.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(norm.std, np.maximum(observations.std(0), STD_FLOOR), rtol=1e-6)
    assert torch_policy.metadata.action_normalization is None  # OGBench actions are in [-1, 1] already


def test_chunk_starts_keep_every_chunk_inside_one_episode() -> None:
    terminals = np.array([0, 0, 1, 0, 1, 0, 0])  # episodes: rows 0-2, 3-4, 5-6 (the data ends at row 6)
    assert chunk_starts(terminals, 1).tolist() == [0, 1, 2, 3, 4, 5, 6]
    # a terminal at a chunk's last position keeps it whole (docs/chunking.md); none may come earlier
    assert chunk_starts(terminals, 2).tolist() == [0, 1, 3, 5]
    assert chunk_starts(terminals, 3).tolist() == [0]


def test_sampler_actions_stay_in_the_unit_range_for_large_noise() -> None:
    torch.manual_seed(0)
    sampler = ddim_sampler(obs_dim=3, act_dim=2, hidden_dims=(16, 16, 16)).eval()
    with torch.no_grad():
        actions = sampler(torch.zeros(5, 3), 10.0 * torch.randn(5, 2))
    assert float(actions.abs().max()) <= 1.0


def test_hidden_dims_that_are_no_residual_stack_are_refused() -> None:
    with pytest.raises(ValueError, match="odd number of equal widths"):
        ddim_sampler(obs_dim=3, act_dim=2, hidden_dims=(32, 32))


class ExactNoisePredictor(torch.nn.Module):
    """The ε that a perfectly trained network predicts when the data is one action a*: ε = (x_t − √ᾱ_t·a*) / √(1 − ᾱ_t)
    (Ho et al. 2020, eq. 4 solved for ε)."""

    def __init__(self, target: torch.Tensor, alphas: torch.Tensor) -> None:
        super().__init__()
        self.target, self.alphas = target, alphas

    def forward(self, x: torch.Tensor, t: torch.Tensor, observations: torch.Tensor) -> torch.Tensor:
        alpha = self.alphas[t.long()][:, None]
        return (x - alpha.sqrt() * self.target) / (1 - alpha).sqrt()


@pytest.mark.parametrize("ddim_steps", [1, 5, 20])
def test_ddim_with_an_exact_noise_predictor_returns_the_data_for_any_noise(ddim_steps: int) -> None:
    target = torch.tensor([0.3, -0.5, 0.9])
    sampler = DDIMSampler(ExactNoisePredictor(target, alphas_cumprod(20)), denoising_steps=20, ddim_steps=ddim_steps)
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 2
    actions = sampler(torch.zeros(4, 7), noise)
    assert torch.allclose(actions, target.expand(4, 3), atol=1e-5)
