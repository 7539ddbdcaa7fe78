"""Build a generated dataset in the cache: sharded over worker processes, merged, written atomically.

Each worker fills its episodes' rows of memory-mapped arrays that the parent preallocated, so memory stays
proportional to the dataset and merging costs no copy. Everything is written into a hidden ``.tmp-*``
directory that is renamed into place only when the files and their provenance are complete: an
interrupted build never leaves anything that looks like a dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowsteer.datasets.errors import DatasetError, NotWritableError
from flowsteer.datasets.generate import (
    GENERATOR_VERSION,
    GenerationSpec,
    generate_episodes,
    make_collection_env,
    row_layout,
)
from flowsteer.datasets.npzfile import sha256, write_npz

TRAIN_FILE = "train.npz"
VAL_FILE = "train-val.npz"  # ogbench derives the validation path as train path with .npz -> -val.npz
PROVENANCE_FILE = "provenance.json"
_TMP_PREFIX = ".tmp-"


def ensure_writable(directory: Path) -> None:
    """Create ``directory`` if needed and prove that files can be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise NotWritableError(
            f"Cannot write generated datasets to {directory} ({exc.strerror or exc}). Choose a writable "
            f"cache with --cache-dir or the FLOWSTEER_CACHE_DIR environment variable."
        ) from exc


def build_dataset(
    spec: GenerationSpec, cache_root: Path, workers: int = 1, progress: bool = True, force: bool = False
) -> Path:
    """Generate ``spec`` into ``cache_root/ogbench/<spec.cache_key>/`` unless it is already there."""
    if not isinstance(workers, int) or workers < 1:
        raise DatasetError(f"--workers must be an integer >= 1, got {workers!r}.")
    parent = cache_root / "ogbench"
    ensure_writable(parent)
    final = parent / spec.cache_key
    # One builder per dataset and cache: trials that start together wait for the first one's copy.
    with _exclusive_lock(parent / f".lock-{spec.cache_key}", spec.dataset):
        remove_stale_tmp_dirs(parent)
        if final.exists() and not force:
            return final
        _build_locked(spec, parent, final, workers, progress)
    return final


@contextlib.contextmanager
def _exclusive_lock(path: Path, dataset: str) -> Iterator[None]:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is generating {dataset} ...", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_locked(spec: GenerationSpec, parent: Path, final: Path, workers: int, progress: bool) -> None:
    tmp = parent / f"{_TMP_PREFIX}{spec.cache_key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        started = time.perf_counter()
        arrays = _generate_into_memmaps(spec, tmp, workers, progress)
        seconds = time.perf_counter() - started
        split = spec.episodes * spec.episode_steps
        write_npz(tmp / TRAIN_FILE, {k: a[:split] for k, a in arrays.items()})
        write_npz(tmp / VAL_FILE, {k: a[split:] for k, a in arrays.items()})
        del arrays
        for scratch in [*tmp.glob("*.npy"), *tmp.glob("shard-*")]:
            scratch.unlink()
        provenance = generated_provenance(spec, tmp, workers, seconds)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        if final.exists():  # --force: replace only now that the new copy is complete
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generated_provenance(spec: GenerationSpec, directory: Path, workers: int, seconds: float) -> dict:
    """Where the data came from, enough to regenerate the same bytes."""
    import gymnasium
    import mujoco

    files = {}
    for split, name in (("train", TRAIN_FILE), ("val", VAL_FILE)):
        path = directory / name
        files[split] = {"file": name, "sha256": sha256(path), "bytes": path.stat().st_size}
    steps = spec.episode_steps - 1  # ogbench drops each episode's last row when it forms transitions
    files["train"]["transitions"] = spec.episodes * steps
    files["val"]["transitions"] = spec.val_episodes * steps
    return {
        "source": "generated",
        "dataset": spec.dataset,
        "generator": {
            "name": "flowsteer",
            "generator_version": GENERATOR_VERSION,
            "recipe": spec.recipe(),
            **spec.as_dict(),
        },
        "versions": {
            "ogbench": _dist_version("ogbench"),
            "mujoco": mujoco.__version__,
            "gymnasium": gymnasium.__version__,
            "numpy": np.__version__,
            "flowsteer": _dist_version("flowsteer"),
        },
        "files": files,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "build": {"workers": workers, "seconds": round(seconds, 1)},
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def remove_stale_tmp_dirs(parent: Path) -> None:
    """Delete build directories left by processes that no longer run (killed builds)."""
    for tmp in parent.glob(f"{_TMP_PREFIX}*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _generate_into_memmaps(spec: GenerationSpec, tmp: Path, workers: int, progress: bool) -> dict:
    env = make_collection_env(spec)
    rows = spec.total_episodes * spec.episode_steps
    arrays = {
        key: np.lib.format.open_memmap(tmp / f"{key}.npy", mode="w+", dtype=dtype, shape=(rows, *shape))
        for key, (shape, dtype) in row_layout(spec, env).items()
    }
    bar = tqdm(
        total=spec.total_episodes,
        desc=f"generating {spec.dataset}",
        unit="ep",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 15.0,  # logs get a line every 15 s, not a stream
    )
    with bar:
        if workers == 1:
            generate_episodes(spec, 0, spec.total_episodes, arrays, on_episode=lambda: bar.update(1), env=env)
        else:
            env.close()
            for array in arrays.values():
                array.flush()
            _run_shards(spec, tmp, min(workers, spec.total_episodes), bar)
            arrays = {key: np.load(tmp / f"{key}.npy", mmap_mode="r") for key in arrays}
    return arrays


def shard_bounds(total: int, shards: int) -> list[tuple[int, int]]:
    """Split episode indices ``0..total-1`` into contiguous, nearly equal ranges."""
    edges = np.linspace(0, total, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _run_shards(spec: GenerationSpec, tmp: Path, workers: int, bar: tqdm) -> None:
    # Fresh interpreters (not fork: MuJoCo and JAX state must not be forked; not multiprocessing's spawn:
    # it re-imports the caller's __main__, which breaks scripts without a main guard).
    procs = []
    for index, (first, stop) in enumerate(shard_bounds(spec.total_episodes, workers)):
        args = json.dumps({"spec": dataclasses.asdict(spec), "first": first, "stop": stop, "index": index})
        log = open(tmp / f"shard-{index}.log", "wb")  # noqa: SIM115  (closed with the process below)
        command = [sys.executable, "-m", "flowsteer.datasets.build", str(tmp), args]
        procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        while True:
            if (done := _shard_progress(tmp)) > bar.n:
                bar.update(done - bar.n)
            codes = [proc.poll() for proc, _ in procs]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                raise DatasetError(_shard_failure(tmp, failed[0], codes[failed[0]]))
            if all(code == 0 for code in codes):
                break
            time.sleep(0.2)
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()


def _shard_progress(tmp: Path) -> int:
    done = 0
    for path in tmp.glob("shard-*.progress"):
        text = path.read_text().strip()
        done += int(text) if text.isdigit() else 0
    return done


def _shard_failure(tmp: Path, index: int, exitcode: int | None) -> str:
    log = tmp / f"shard-{index}.log"
    detail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    return f"Generation worker {index} failed (exit code {exitcode}); nothing was written to the cache.\n{detail}"


def _shard_main(tmp: Path, spec: GenerationSpec, first: int, stop: int, index: int) -> None:
    arrays = {p.stem: np.load(p, mmap_mode="r+") for p in tmp.glob("*.npy")}
    progress = tmp / f"shard-{index}.progress"
    parent = os.getppid()
    done = 0

    def count() -> None:
        nonlocal done
        if os.getppid() != parent:  # the build was killed: stop instead of working for nobody
            raise SystemExit(f"generation worker {index}: parent process {parent} is gone")
        done += 1
        scratch = progress.with_suffix(".progress-tmp")
        scratch.write_text(str(done))
        os.replace(scratch, progress)

    generate_episodes(spec, first, stop, arrays, on_episode=count)
    for array in arrays.values():
        array.flush()


if __name__ == "__main__":  # a generation worker, started by _run_shards
    _job = json.loads(sys.argv[2])
    _shard_main(Path(sys.argv[1]), GenerationSpec(**_job["spec"]), _job["first"], _job["stop"], _job["index"])
