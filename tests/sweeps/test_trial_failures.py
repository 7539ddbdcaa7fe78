"""A trial that fails tells the user why: its exception, the last frames of its traceback and where the whole
traceback is, in the sweep's own output (Ray's worker logs are not forwarded to the driver)."""

from __future__ import annotations

import pandas as pd
import pytest

from flowsteer.sweeps.cluster import local_temp_dir
from flowsteer.sweeps.driver import run_sweep
from flowsteer.sweeps.spec import load_sweep

pytestmark = pytest.mark.integration  # Ray Tune trials that fail for real

TINY_DSRL = {"actor_hidden_dims": [32, 32], "value_hidden_dims": [32, 32], "base_hidden_dims": [32, 32],
             "batch_size": 32, "flow_steps": 3}  # fmt: skip


def test_a_failed_trials_exception_and_traceback_reach_the_sweeps_output(write_sweep, reaper, tmp_path):
    base_run = tmp_path / "base-run"
    base_run.mkdir()
    base_run.rmdir()  # the base policy's run was deleted before the sweep: the trial fails inside run()
    path = write_sweep(
        "failing",
        algorithms={"dsrl_sac": {"hyperparameters": {**TINY_DSRL, "base_run": str(base_run), "warmup_steps": 0}}},
        run={"offline_steps": 0, "online_steps": 20},
        max_failures=0,
    )
    spec = load_sweep(path)
    reaper.append(local_temp_dir(spec.directory))
    lines: list[str] = []
    outcome = run_sweep(spec, write=lines.append)

    [trial] = outcome.trials
    assert outcome.counts.get("finished", 0) == 0
    output = "\n".join(lines)
    exception = f"RunSpecError: base_run {base_run} is not a flowsteer run directory (no config.json)"
    assert f"not finished: {trial.id} (created) flowsteer.platform.spec.RunSpecError: " in output, output
    assert exception in output
    assert '/flowsteer/platform/base_policy.py", line' in output and "in load_base_policy" in output  # the raise
    error_file = spec.directory / "tune" / "grid" / trial.id / "error.txt"
    assert f"full traceback: {error_file}" in output
    assert exception in error_file.read_text()
    summary = pd.read_csv(spec.directory / "summary.csv", keep_default_na=False)
    assert summary["error_file"].tolist() == [str(error_file)]
