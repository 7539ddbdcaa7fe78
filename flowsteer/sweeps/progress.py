"""A sweep's live summary: one line whenever a trial starts, ends, fails or improves the best score."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback


class SweepProgress(Callback):
    """Counts trials by state and prints a status line on every change (Tune's own table is turned off)."""

    def __init__(self, label: str, total: int, skipped: int = 0, write: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.total = total + skipped
        self.done = skipped
        self.skipped = skipped
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.diverged: set[str] = set()
        self.retries = 0
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))

    # Tune callback hooks -------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._line(f"started {_name(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("state") == "diverged":
            self.diverged.add(trial.trial_id)
        if result.get("state") == "finished" and "score" in result:
            score = float(result["score"])
            if self.best is None or score > self.best[0]:
                self.best = (score, _name(trial))
                self._line(f"new best {_name(trial)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._line(f"{'diverged' if trial.trial_id in self.diverged else 'finished'} {_name(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.retries += 1
        self._line(f"failed {_name(trial)}; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.failed.add(trial.trial_id)
        self._line(f"failed {_name(trial)} (no retries left)")

    # ----------------------------------------------------------------------------------------------

    def status(self) -> str:
        minutes = (time.monotonic() - self.started) / 60
        best = f"; best {self.best[0]:.1f} ({self.best[1]})" if self.best else ""
        failed = len(self.failed) + len(self.diverged)
        return (
            f"[{self.label} {minutes:5.1f} min] {self.done}/{self.total} done, {len(self.running)} running, "
            f"{failed} failed, {self.retries} retried{best}"
        )

    def _line(self, event: str) -> None:
        self.write(f"{self.status()} | {event}")


def _name(trial: Any) -> str:
    return str(trial)  # the trial name given by the sweep (the run id)
