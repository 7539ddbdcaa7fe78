"""Checkpoints that make resume exact, written atomically and without pickle.

A checkpoint is a directory ``checkpoints/step_<N>/`` holding ``arrays.npz`` (every array leaf of the
saved pytrees, keyed by its path, loaded with ``allow_pickle=False``) and ``meta.json`` (counters, log
offsets, anything JSON). It is written under a hidden name and renamed into place, then ``LATEST`` is
switched to it with an atomic replace: a run killed at any moment finds either the old or the new
checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flowsteer.datasets.npzfile import fsync, write_npz

LATEST = "LATEST"
_KEEP = 2  # checkpoints kept on disk (the newest and the one before, in case the newest is unreadable)


def _flatten(name: str, tree: Any) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{name}/{jax.tree_util.keystr(path)}": np.asarray(leaf) for path, leaf in leaves}


def save(directory: Path, step: int, trees: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``trees`` (name -> pytree of arrays) and ``meta`` as checkpoint ``step``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step_{step:09d}"
    tmp = directory / f".tmp-step_{step:09d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    arrays: dict[str, np.ndarray] = {}
    for name, tree in trees.items():
        arrays.update(_flatten(name, tree))
    write_npz(tmp / "arrays.npz", arrays, compress=False)  # speed over size: parameters barely compress
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1, sort_keys=True))
    fsync(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, directory / LATEST)
    fsync(directory)
    for old in sorted(directory.glob("step_*"))[:-_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    return path if (path / "meta.json").exists() else None


def load(path: Path, templates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint into pytrees shaped like ``templates``; every leaf must be present and match."""
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "arrays.npz", allow_pickle=False) as stored:
        trees = {}
        for name, template in templates.items():
            flat, treedef = jax.tree_util.tree_flatten_with_path(template)
            leaves = []
            for key_path, leaf in flat:
                key = f"{name}/{jax.tree_util.keystr(key_path)}"
                if key not in stored:
                    raise ValueError(f"checkpoint {path} lacks {key}: it was written by a different run setup")
                value = stored[key]
                if value.shape != np.shape(leaf):
                    raise ValueError(f"checkpoint {path}: {key} has shape {value.shape}, expected {np.shape(leaf)}")
                leaves.append(value)
            trees[name] = jax.tree_util.tree_unflatten(treedef, leaves)
    return trees, meta
