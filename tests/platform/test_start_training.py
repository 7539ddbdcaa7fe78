"""`start_training`: the first online steps collect transitions and run no update (QC's and QAM's protocol)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flowsteer.platform.loop import run
from flowsteer.platform.spec import RunSpecError


@pytest.mark.integration  # a real offline-to-online run
def test_no_online_update_before_start_training(make_spec) -> None:
    spec = make_spec(
        "fql", offline_steps=20, online_steps=40, start_training=20, log_interval=10, eval_episodes=0,
        checkpoint_interval=100, buffer_size=10_000,
    )  # fmt: skip
    run(spec, progress=False)
    losses = pd.read_csv(spec.run_dir / "train.csv").set_index("step")["critic/critic_loss"]
    assert all(math.isfinite(losses[step]) for step in (10, 20))  # offline updates
    assert all(math.isnan(losses[step]) for step in (30, 40))  # online steps 10 and 20: collected only
    assert all(math.isfinite(losses[step]) for step in (50, 60))


def test_start_training_that_leaves_no_update_is_refused(make_spec) -> None:
    with pytest.raises(RunSpecError, match="start_training 40 leaves no online step that updates"):
        make_spec("fql", offline_steps=20, online_steps=40, start_training=40)
