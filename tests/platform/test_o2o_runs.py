"""Offline-to-online runs of RLPD (online only) and Cal-QL (offline, then online): a run interrupted inside its
online phase and resumed ends exactly as a run never interrupted; Cal-QL's online rows get their Monte-Carlo
returns when their episode ends.

The interruption is in-process: an exception raised from the learner's online step stops the run between two
steps, after it has written rows that its last checkpoint does not hold (cheaper than kill -9 in a subprocess,
which tests/platform/test_resume.py covers for the loop itself).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from flowsteer.algorithms import calql, make_config
from flowsteer.platform import checkpoint
from flowsteer.platform.loop import run
from flowsteer.rundir import measurements
from flowsteer.workers.learner import Learner

# Three real offline-to-online runs per algorithm; in one xdist worker, so each reference run is made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("o2o-runs")]

# cube-single episodes last up to 200 steps and checkpoints come only at episode ends: the first online checkpoint
# is at the end of the first episode (online step 200 at the latest), the interruption comes 30 steps after it.
SCHEDULES = {"rlpd": {"offline_steps": 0, "online_steps": 300}, "calql": {"offline_steps": 40, "online_steps": 300}}


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory: pytest.TempPathFactory):
    """The runs of one test compile the same programs; a persistent compilation cache compiles each once. A hit
    returns the executable the first compile made, so no number changes (a run's cost here is mostly compiling)."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")  # fmt: skip
    previous = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()  # the process may have decided "no cache" at its first compile
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


class Interrupted(Exception):
    """Stands for whatever stops a run (a lost node, Ctrl-C)."""


def _spec(make_spec, algo: str, output: str):
    return make_spec(
        algo, output=output, checkpoint_interval=100, eval_interval=100, eval_episodes=1, eval_envs=1,
        log_interval=10, buffer_size=1000, **SCHEDULES[algo],
    )  # fmt: skip


def _interrupt_after_an_online_checkpoint(spec, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run `spec` until 30 updates after its first online checkpoint, then raise; returns the checkpoint's step."""
    checkpoints = spec.run_dir / "checkpoints"
    online_step = Learner.online_step

    def step_then_stop(learner: Learner, transition: dict, index: int, update: bool = True) -> dict:
        last = checkpoint.latest(checkpoints)
        online = last is not None and json.loads((last / "meta.json").read_text())["phase"] == "online"
        if online and int(learner.state.step) >= checkpoint.step_of(last) + 30:
            raise Interrupted
        return online_step(learner, transition, index, update)

    with monkeypatch.context() as patch:
        patch.setattr(Learner, "online_step", step_then_stop)
        with pytest.raises(Interrupted):
            run(spec, progress=False)
    return checkpoint.step_of(checkpoint.latest(checkpoints))


@pytest.fixture(scope="module")
def finished() -> dict:
    """Uninterrupted runs by algorithm, shared by this module's tests (each is a real run: run once)."""
    return {}


def _reference(make_spec, finished: dict, algo: str):
    if algo not in finished:
        spec = _spec(make_spec, algo, "reference")
        finished[algo] = (spec, run(spec, progress=False))
    return finished[algo]


@pytest.mark.parametrize("algo", sorted(SCHEDULES))
def test_an_interrupted_o2o_run_resumes_to_the_numbers_of_an_uninterrupted_one(
    make_spec, monkeypatch: pytest.MonkeyPatch, finished: dict, algo: str
) -> None:
    _, reference = _reference(make_spec, finished, algo)
    spec = _spec(make_spec, algo, "interrupted")
    resumed_from = _interrupt_after_an_online_checkpoint(spec, monkeypatch)
    assert SCHEDULES[algo]["offline_steps"] < resumed_from < reference.step

    result = run(spec, resume=True, progress=False)

    assert result.status == "finished" and result.step == reference.step
    for name in ("train.csv", "eval.csv"):
        assert measurements(spec.run_dir / name) == measurements(reference.run_dir / name), name
    final = checkpoint.latest(spec.run_dir / "checkpoints")
    expected = checkpoint.latest(reference.run_dir / "checkpoints")
    assert final.name == expected.name
    assert (final / "arrays.npz").read_bytes() == (expected / "arrays.npz").read_bytes()


def test_calql_online_rows_get_their_returns_when_their_episode_ends(make_spec, finished: dict) -> None:
    spec, result = _reference(make_spec, finished, "calql")
    with np.load(checkpoint.latest(result.run_dir / "checkpoints") / "arrays.npz") as arrays:
        buffer = {key.split("'")[1]: arrays[key] for key in arrays.files if key.startswith("online_buffer/")}
    ended = np.flatnonzero(buffer["terminals"] > 0.5)
    assert ended.size >= 1  # at least one whole episode (cube-single: at most 200 steps) in 300 online steps
    done = ended[-1] + 1
    config = make_config("calql", spec.task, spec.hyperparameters, spec.setting)
    expected = np.concatenate(
        [calql.mc_returns(config, {k: v[a:b] for k, v in buffer.items()}) for a, b in _episodes(ended)]
    )
    np.testing.assert_allclose(buffer["mc_returns"][:done], expected, rtol=1e-6)
    assert np.all(buffer["mc_returns"][done:] == -np.inf)  # the episode still running at the end: no bound yet


def _episodes(ends: np.ndarray) -> list[tuple[int, int]]:
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [(int(a), int(b) + 1) for a, b in zip(starts, ends, strict=True)]
