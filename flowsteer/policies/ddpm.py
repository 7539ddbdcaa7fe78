"""A DPPO-style diffusion policy for state tasks, in torch: DDPM training, a deterministic DDIM sampler.

The network is DPPO's `DiffusionMLP` with `residual_style=True` (Ren et al. 2024, arXiv 2409.00588; irom-lab/dppo
model/diffusion/mlp_diffusion.py, model/common/mlp.py): the noisy chunk, a sinusoidal time embedding passed through
a small Mish MLP, and the observation, concatenated into a residual MLP that predicts ε. Training is DDPM's ε loss
(Ho et al. 2020, arXiv 2006.11239, eq. 14) on DPPO's cosine schedule with 20 denoising steps; sampling is DDIM
with η = 0 (Song et al. 2021, arXiv 2010.02502, eq. 12), DPPO's "uniform" (leading) discretisation, x₀ clipped to
[-1, 1] at every step and ε recomputed from the clipped x₀ (DPPO model/diffusion/diffusion.py `p_mean_var`).

The sampler's initial noise x_T is its input: `DDIMSampler(observations, noise) -> actions` is a function, which
is what DSRL steers (docs/base-policies.md). This module imports torch; import it only where torch is wanted.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flowsteer.policies.fileformat import FORMAT, VERSION, ActionNormalization, ObservationNormalization, PolicyMetadata
from flowsteer.policies.torch_policy import script_module

HIDDEN_DIMS = (512, 512, 512)  # DPPO gym pretraining configs (cfg/gym/pretrain/*/pre_diffusion_mlp.yaml) mlp_dims
TIME_DIM = 16  # DPPO DiffusionMLP time_dim
DENOISING_STEPS = 20  # DPPO gym pretraining denoising_steps
DDIM_STEPS = 5  # few-step DDIM; DPPO's uniform discretisation needs denoising_steps // ddim_steps >= 1
BATCH_SIZE = 128  # DPPO gym pretraining train.batch_size
LEARNING_RATE = 1e-3  # DPPO gym pretraining train.learning_rate (cosine-annealed to min_lr 1e-4)
MIN_LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-6  # DPPO gym pretraining train.weight_decay (AdamW)
DENOISED_CLIP = 1.0  # DPPO denoised_clip_value: x₀ stays in the action range at every DDIM step
STD_FLOOR = 1e-2  # a nearly constant dimension is centred, not scaled up: a small change online stays small
PROGRESS_EVERY = 100  # training steps between progress reports (and the window of the reported loss)


def cosine_betas(steps: int, s: float = 0.008) -> np.ndarray:
    """β_1 … β_T of the cosine schedule (Nichol & Dhariwal 2021, arXiv 2102.09672, eq. 17), clipped at 0.999 as
    DPPO's model/diffusion/sampling.py `cosine_beta_schedule` clips them."""
    x = np.linspace(0.0, 1.0, steps + 1)
    alphas_cumprod = np.cos((x + s) / (1 + s) * np.pi / 2) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    return np.clip(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, 0.999)


def alphas_cumprod(steps: int) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s) for t = 0 … T − 1, float32."""
    return torch.tensor(np.cumprod(1.0 - cosine_betas(steps)), dtype=torch.float32)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the diffusion step, then Linear(d, 2d), Mish, Linear(2d, d) (DPPO DiffusionMLP)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(1e4) / (half - 1)))
        self.register_buffer("freqs", freqs)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.Mish(), nn.Linear(2 * dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class ResidualBlock(nn.Module):
    """Two pre-activation linear layers with a skip connection (DPPO TwoLayerPreActivationResNetLinear)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(width, width)
        self.l2 = nn.Linear(width, width)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.l2(self.act(self.l1(self.act(x))))


class DiffusionMLP(nn.Module):
    """ε_θ(x_t, t, o): DPPO's residual MLP. hidden_dims (w, w, w) is an input layer and one residual block; each
    further pair of w adds a block (DPPO ResidualMLP: 1 + 2k equal widths)."""

    def __init__(
        self, obs_dim: int, noise_dim: int, hidden_dims: Sequence[int] = HIDDEN_DIMS, time_dim: int = TIME_DIM
    ):
        super().__init__()
        hidden_dims = tuple(hidden_dims)
        if len(set(hidden_dims)) != 1 or len(hidden_dims) % 2 != 1:
            raise ValueError(
                f"hidden_dims {list(hidden_dims)}: the residual MLP needs an odd number of equal widths (an input "
                "layer, then residual blocks of two), e.g. [512, 512, 512] or [32, 32, 32]."
            )
        if time_dim < 4 or time_dim % 2:
            raise ValueError(
                f"time_dim must be even and >= 4 (sines and cosines of time_dim / 2 frequencies), got {time_dim}"
            )
        width = hidden_dims[0]
        self.time_embedding = TimeEmbedding(time_dim)
        self.inp = nn.Linear(noise_dim + time_dim + obs_dim, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(len(hidden_dims) // 2)])
        self.out = nn.Linear(width, noise_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, observations: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, self.time_embedding(t), observations], dim=-1)  # DPPO's order: chunk, time, state
        return self.out(self.blocks(self.inp(h)))


class DDIMSampler(nn.Module):
    """(observations (n, obs_dim), noise x_T (n, H·d)) -> actions (n, H·d) in [-1, 1]: DDIM with η = 0."""

    def __init__(self, network: DiffusionMLP, denoising_steps: int, ddim_steps: int) -> None:
        super().__init__()
        if not 1 <= ddim_steps <= denoising_steps:
            raise ValueError(f"ddim_steps must be in 1 … denoising_steps ({denoising_steps}), got {ddim_steps}")
        self.network = network
        alphas = alphas_cumprod(denoising_steps)
        # DPPO's uniform ("leading") discretisation: t = 0, r, 2r, … with r = T // ddim_steps, run from the last
        timesteps = torch.arange(ddim_steps) * (denoising_steps // ddim_steps)
        previous = torch.cat([torch.ones(1), alphas[timesteps[:-1]]])  # ᾱ before t = 0 is 1: the last step gives x₀
        self.register_buffer("timesteps", timesteps.flip(0).to(torch.float32))
        self.register_buffer("alphas", alphas[timesteps].flip(0))
        self.register_buffer("alphas_prev", previous.flip(0))
        self.steps = ddim_steps
        self.clip = DENOISED_CLIP

    def forward(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = noise
        n = x.shape[0]
        for i in range(self.steps):
            alpha, alpha_prev = self.alphas[i], self.alphas_prev[i]
            eps = self.network(x, self.timesteps[i].expand(n), observations)
            x0 = ((x - (1 - alpha).sqrt() * eps) / alpha.sqrt()).clamp(-self.clip, self.clip)
            eps = (x - alpha.sqrt() * x0) / (1 - alpha).sqrt()  # ε consistent with the clipped x₀ (DPPO)
            x = alpha_prev.sqrt() * x0 + (1 - alpha_prev).sqrt() * eps
        return x.clamp(-1.0, 1.0)


def ddim_sampler(
    obs_dim: int,
    act_dim: int,
    action_chunk: int = 1,
    hidden_dims: Sequence[int] = HIDDEN_DIMS,
    time_dim: int = TIME_DIM,
    denoising_steps: int = DENOISING_STEPS,
    ddim_steps: int = DDIM_STEPS,
) -> DDIMSampler:
    """A freshly initialised sampler; also the factory a manifest names (`flowsteer.policies.ddpm:ddim_sampler`)."""
    network = DiffusionMLP(obs_dim, action_chunk * act_dim, hidden_dims, time_dim)
    return DDIMSampler(network, denoising_steps, ddim_steps)


@dataclass(frozen=True)
class TrainedPolicy:
    """A trained sampler (TorchScript, on the CPU, in eval mode), what it declares, and how to rebuild it."""

    sampler: torch.jit.ScriptModule
    metadata: PolicyMetadata
    factory_kwargs: dict[str, Any]  # ddim_sampler(**factory_kwargs) builds the same module, for a manifest
    final_loss: float


def chunk_starts(terminals: np.ndarray, horizon: int) -> np.ndarray:
    """Rows t whose chunk t … t+H−1 lies in one episode: no terminal before its last position and row t+H−1 in
    the data (docs/chunking.md: a terminal at the last position keeps a chunk whole)."""
    rows = len(terminals)
    ended = np.concatenate([[0], np.cumsum(np.asarray(terminals, dtype=np.int64) != 0)])
    starts = np.arange(max(rows - horizon + 1, 0))
    return starts[ended[starts + horizon - 1] - ended[starts] == 0]


def train_ddpm_policy(
    observations: np.ndarray,
    actions: np.ndarray,
    terminals: np.ndarray,
    *,
    steps: int,
    action_chunk: int = 1,
    hidden_dims: Sequence[int] = HIDDEN_DIMS,
    time_dim: int = TIME_DIM,
    denoising_steps: int = DENOISING_STEPS,
    ddim_steps: int = DDIM_STEPS,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    seed: int = 0,
    device: str = "cpu",
    task: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainedPolicy:
    """Train ε_θ with the DDPM loss on (observation, action chunk) pairs of a dataset and return its DDIM sampler.

    `observations` (N, obs_dim), `actions` (N, d) in [-1, 1] unless they are not (then min-max mapped and the map
    declared), `terminals` (N,) marking episode ends. Same seed, same weights on the CPU. `progress(step, loss)` is
    called every PROGRESS_EVERY steps with the mean loss since the last call."""
    observations = np.asarray(observations, np.float32)
    actions = np.asarray(actions, np.float32)
    if observations.ndim != 2 or actions.ndim != 2 or not len(observations) == len(actions) == len(terminals):
        raise ValueError(
            f"expected observations (N, obs_dim), actions (N, act_dim) and terminals (N,), got shapes "
            f"{observations.shape}, {actions.shape}, {np.shape(terminals)}"
        )
    if steps < 1 or batch_size < 1 or action_chunk < 1:
        raise ValueError(f"steps, batch_size and action_chunk must be >= 1, got {steps}, {batch_size}, {action_chunk}")
    obs_dim, act_dim = observations.shape[1], actions.shape[1]
    starts = chunk_starts(terminals, action_chunk)
    if len(starts) == 0:
        raise ValueError(f"no chunk of {action_chunk} actions fits inside one episode of the data; use a smaller one")
    obs_norm = ObservationNormalization(
        mean=observations.mean(0).astype(float).tolist(),
        std=np.maximum(observations.std(0), STD_FLOOR).astype(float).tolist(),
    )
    act_norm = _action_normalization(actions)
    targets = actions if act_norm is None else _to_unit_range(actions, act_norm)
    # a_t … a_{t+H−1} flattened time-major (docs/chunking.md)
    chunks = targets[starts[:, None] + np.arange(action_chunk)].reshape(len(starts), -1)
    inputs = (observations[starts] - np.asarray(obs_norm.mean, np.float32)) / np.asarray(obs_norm.std, np.float32)

    factory_kwargs = {"obs_dim": obs_dim, "act_dim": act_dim, "action_chunk": action_chunk,
                      "hidden_dims": list(hidden_dims), "time_dim": time_dim,
                      "denoising_steps": denoising_steps, "ddim_steps": ddim_steps}  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's global RNG
        torch.manual_seed(seed)
        sampler = ddim_sampler(**factory_kwargs)
    network = sampler.network.to(device).train()
    generator = torch.Generator(device=device).manual_seed(seed)
    obs_t = torch.from_numpy(inputs).to(device)
    chunk_t = torch.from_numpy(chunks).to(device)
    alphas = alphas_cumprod(denoising_steps).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=min(lr, MIN_LEARNING_RATE))
    window = torch.zeros((), device=device)
    window_steps, last_loss = 0, float("nan")
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(starts), (batch_size,), generator=generator, device=device)
        t = torch.randint(0, denoising_steps, (batch_size,), generator=generator, device=device)
        x0 = chunk_t[rows]
        eps = torch.randn(x0.shape, generator=generator, device=device)
        alpha = alphas[t][:, None]
        x_t = alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps  # q(x_t | x_0) (Ho et al. 2020, eq. 4)
        loss = F.mse_loss(network(x_t, t.to(torch.float32), obs_t[rows]), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        window += loss.detach()
        window_steps += 1
        if step % PROGRESS_EVERY == 0 or step == steps:
            last_loss = float(window) / window_steps
            window.zero_()
            window_steps = 0
            if progress is not None:
                progress(step, last_loss)
    scripted = script_module(sampler.cpu().eval())
    metadata = PolicyMetadata(
        format=FORMAT,
        version=VERSION,
        framework="torch",
        obs_dim=obs_dim,
        act_dim=act_dim,
        action_chunk=action_chunk,
        sampler="ddim",
        sampler_steps=ddim_steps,
        observation_normalization=obs_norm,
        action_normalization=act_norm,
        trained={
            "task": task,
            "steps": steps,
            "seed": seed,
            "batch_size": batch_size,
            "lr": lr,
            "dataset_rows": len(observations),
            "chunks": len(starts),
            "final_loss": last_loss,
            "hidden_dims": list(hidden_dims),
            "denoising_steps": denoising_steps,
        },
    )
    return TrainedPolicy(scripted, metadata, factory_kwargs, last_loss)


def _action_normalization(actions: np.ndarray) -> ActionNormalization | None:
    """None for actions already in [-1, 1] (OGBench's); otherwise the data's per-dimension range."""
    if actions.min() >= -1.0 and actions.max() <= 1.0:
        return None
    low, high = actions.min(0).astype(float), actions.max(0).astype(float)
    high = np.where(high > low, high, low + 1.0)  # a constant dimension still maps one to one
    return ActionNormalization(low=low.tolist(), high=high.tolist())


def _to_unit_range(actions: np.ndarray, norm: ActionNormalization) -> np.ndarray:
    low, high = np.asarray(norm.low, np.float32), np.asarray(norm.high, np.float32)
    return 2.0 * (actions - low) / (high - low) - 1.0
