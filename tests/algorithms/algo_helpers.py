"""Helpers shared by the algorithm tests (imported by name: conftest puts this folder on sys.path)."""

from __future__ import annotations

import jax
import numpy as np

OBS_DIM, ACT_DIM = 3, 2


def random_transitions(n: int, seed: int = 0, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> dict:
    """A random transition dataset with the keys the learners expect."""
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.2).astype(np.float32),
        "terminals": np.zeros(n, np.float32),
    }


def dense(params: dict, path: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of the Dense layer at `path` inside flax `params`, as numpy."""
    node = params["params"]
    for key in path:
        node = node[key]
    return np.asarray(node["kernel"]), np.asarray(node["bias"])


def np_batch(batch: dict) -> dict:
    """A device batch as float64 numpy arrays, for computing expected losses by hand."""
    return {k: np.asarray(v, np.float64) for k, v in batch.items()}


def q_heads(critic_params: dict, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """(E, B) values of a linear critic ensemble (`hidden_dims=()`), computed in numpy."""
    k, b = dense(critic_params, ("VmapMLP_0", "Dense_0"))
    x = np.concatenate([obs, act], axis=-1)
    return np.stack([x @ k[e, :, 0] + b[e, 0] for e in range(k.shape[0])])


def perturb(tree, key: int = 7, scale: float = 0.3):
    """`tree` plus Gaussian noise: makes target networks differ from online ones."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


def set_dense(params: dict, path: tuple[str, ...], kernel=None, bias=None) -> dict:
    """A copy of flax `params` with the Dense layer at `path` given a new kernel and/or bias."""

    def replace(node: dict, keys: tuple[str, ...]) -> dict:
        if not keys:
            new = dict(node)
            if kernel is not None:
                new["kernel"] = jax.numpy.asarray(kernel, jax.numpy.float32)
            if bias is not None:
                new["bias"] = jax.numpy.asarray(bias, jax.numpy.float32)
            return new
        return {**node, keys[0]: replace(node[keys[0]], keys[1:])}

    return replace(params, ("params", *path))


def bimodal_bandit(n: int = 2048, seed: int = 0) -> dict[str, np.ndarray]:
    """One-step bandit, s ~ U(−1, 1) irrelevant, actions ±0.5 (+ noise) equally often, r = a, all terminal."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    actions = (rng.choice([-0.5, 0.5], size=(n, 1)) + 0.05 * rng.normal(size=(n, 1))).astype(np.float32)
    return {
        "observations": obs,
        "actions": actions,
        "next_observations": obs,
        "rewards": actions[:, 0].copy(),
        "masks": np.zeros(n, np.float32),
        "terminals": np.ones(n, np.float32),
    }
