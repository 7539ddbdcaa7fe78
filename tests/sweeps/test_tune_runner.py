"""The one place flowsteer reaches into Ray Tune's internals works on the installed Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

from flowsteer.sweeps import cluster
from flowsteer.sweeps.spec import load_sweep
from flowsteer.sweeps.tune_runner import replace_callbacks

pytestmark = pytest.mark.integration  # a real Tune experiment, errored and restored


class Recorder(tune.Callback):
    def __init__(self) -> None:
        self.started: list[str] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.append(str(trial))


def test_a_restored_tuner_reports_to_the_callbacks_it_is_given(write_sweep, reaper, tmp_path: Path):
    spec = load_sweep(write_sweep())
    reaper.append(cluster.local_temp_dir(spec.directory))
    marker = tmp_path / "failed-once"

    def fails_once(config: dict[str, Any]) -> None:  # nested: Ray pickles it by value
        if not Path(config["marker"]).exists():
            Path(config["marker"]).touch()
            raise RuntimeError("the first attempt fails")
        tune.report({"score": 1.0})

    first = Recorder()
    run_config = tune.RunConfig(name="restored", storage_path=str(tmp_path / "tune"), verbose=0, callbacks=[first])
    with cluster.connect(spec):
        assert tune.Tuner(fails_once, param_space={"marker": str(marker)}, run_config=run_config).fit().errors
        tuner = tune.Tuner.restore(str(tmp_path / "tune" / "restored"), trainable=fails_once, resume_errored=True)
        again = Recorder()
        replace_callbacks(tuner, [again])
        results = tuner.fit()
    assert not results.errors and len(again.started) == 1  # the new callback saw the resumed trial
