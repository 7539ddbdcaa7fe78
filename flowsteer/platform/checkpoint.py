"""Checkpoints that make resume exact, written atomically and without pickle.

A checkpoint is a directory ``checkpoints/step_<N>/`` holding ``arrays.npz`` (every array leaf of the
saved pytrees, keyed by its path, loaded with ``allow_pickle=False``) and ``meta.json`` (counters, log
offsets, anything JSON). It is written under a hidden name and renamed into place, then ``LATEST`` is
switched to it with an atomic replace: a run killed at any moment finds either the old or the new
checkpoint, never half of one.

Readers do not trust ``LATEST`` alone: the newest ``step_*`` directory whose files read back whole is the
checkpoint to resume from. A missing or dangling ``LATEST``, or a newest checkpoint damaged after it was
written, falls back to the one before (two are kept), with a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flowsteer.datasets.npzfile import fsync, write_npz
from flowsteer.rundir import RunFileError, RunWarning, read_json

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
    for old in candidates(directory)[_KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def candidates(directory: Path) -> list[Path]:
    """Every checkpoint directory, newest first (hidden ``.tmp-*`` builds are not checkpoints)."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob("step_*") if p.is_dir()), key=step_of, reverse=True)


def step_of(path: Path) -> int:
    """The step of checkpoint ``path``, from its name (``step_000000200`` -> 200)."""
    return int(path.name.removeprefix("step_"))


def latest(directory: Path) -> Path | None:
    """The newest checkpoint whose meta.json reads back, or None (its arrays are checked by ``newest_readable``)."""
    for path in candidates(directory):
        try:
            read_meta(path)
        except RunFileError:
            continue
        return path
    return None


def read_meta(path: Path) -> dict[str, Any]:
    meta = read_json(path / "meta.json")
    if not isinstance(meta, dict) or "step" not in meta:
        raise RunFileError(f"{path / 'meta.json'} is missing or holds no step.")
    return meta


def verify(path: Path) -> None:
    """Read every byte of a checkpoint back (meta.json parses, every array member passes its CRC); RunFileError
    naming the file otherwise."""
    read_meta(path)
    try:
        with zipfile.ZipFile(path / "arrays.npz") as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise RunFileError(f"{path / 'arrays.npz'} is damaged ({type(exc).__name__}: {exc}).") from None
    if bad is not None:
        raise RunFileError(f"{path / 'arrays.npz'} is damaged: member {bad} fails its CRC check.")


def newest_readable(directory: Path) -> Path | None:
    """The newest checkpoint that reads back whole; earlier damaged ones are skipped with a RunWarning. None when
    there is no checkpoint; RunFileError, listing each one's damage, when none of them is readable."""
    found = candidates(directory)
    problems = []
    for path in found:
        try:
            verify(path)
        except RunFileError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            warnings.warn(f"{problem} Skipped: resuming from the previous checkpoint, {path.name}.", RunWarning,
                          stacklevel=2)  # fmt: skip
        return path
    if problems:
        raise RunFileError(
            f"no checkpoint in {directory} can be read: {' '.join(problems)} Restore them, or move the run "
            f"directory away to start the run over."
        )
    return None


def load(path: Path, templates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint into pytrees shaped like ``templates``; every leaf must be present and match."""
    meta = read_meta(path)
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
