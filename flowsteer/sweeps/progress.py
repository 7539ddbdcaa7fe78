"""A sweep's live summary: one line whenever a trial starts, ends, fails or improves the best score."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback


class SweepProgress(Callback):
    """Counts runs (seeds) by state and prints a status line on every change (Tune's own table is turned off).

    A Tune trial trains a seed group (one seed by default): ``runs`` gives the seeds of each Tune trial by name,
    ``runs_per_trial`` those of a trial it does not name, so that done, running and failed count runs, as the
    sweep's summary does."""

    def __init__(
        self,
        label: str,
        total: int,
        skipped: int = 0,
        write: Callable[[str], None] | None = None,
        runs: dict[str, int] | None = None,
        runs_per_trial: int = 1,
    ) -> None:
        self.label = label
        self.total = total + skipped
        self.done = skipped
        self.skipped = skipped
        self.runs = runs or {}
        self.runs_per_trial = runs_per_trial
        self.running: dict[str, int] = {}  # Tune trial id -> its runs
        self.failed = 0
        self.diverged: dict[str, int] = {}  # Tune trial id -> its diverged runs
        self.retries = 0
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))

    # Tune callback hooks -------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running[trial.trial_id] = self.runs.get(_name(trial), self.runs_per_trial)
        self._line(f"started {_name(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("diverged"):
            self.diverged[trial.trial_id] = int(result["diverged"])
        if result.get("state") == "finished" and not math.isnan(float(result.get("score", math.nan))):
            score = float(result["score"])
            if self.best is None or score > self.best[0]:
                self.best = (score, _name(trial))
                self._line(f"new best {_name(trial)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        runs = self.running.pop(trial.trial_id, 0)
        self.done += runs
        diverged = self.diverged.get(trial.trial_id, 0)
        if not diverged:
            self._line(f"finished {_name(trial)}")
        elif diverged == runs:
            self._line(f"diverged {_name(trial)}")
        else:
            self._line(f"finished {_name(trial)} ({diverged} of its {runs} seeds diverged)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.pop(trial.trial_id, None)
        self.retries += 1
        self._line(f"failed {_name(trial)}; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += self.running.pop(trial.trial_id, self.runs.get(_name(trial), self.runs_per_trial))
        self._line(f"failed {_name(trial)} (no retries left)")

    # ----------------------------------------------------------------------------------------------

    def status(self) -> str:
        minutes = (time.monotonic() - self.started) / 60
        best = f"; best {self.best[0]:.1f} ({self.best[1]})" if self.best else ""
        failed = self.failed + sum(self.diverged.values())
        return (
            f"[{self.label} {minutes:5.1f} min] {self.done}/{self.total} done, {sum(self.running.values())} running, "
            f"{failed} failed, {self.retries} retried{best}"
        )

    def _line(self, event: str) -> None:
        self.write(f"{self.status()} | {event}")


def _name(trial: Any) -> str:
    return str(trial)  # the trial name given by the sweep (its seed group's: the first run id, +N more seeds)
