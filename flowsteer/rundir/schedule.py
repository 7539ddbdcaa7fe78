"""The evaluation schedule of a run and the bounds that keep every run's work finite.

Steps are global: offline gradient steps 1..offline_steps, then online environment steps continue the count. A
run evaluates every ``interval`` steps and at the end of each phase. Everything here is arithmetic: no schedule is
ever built as a collection of all its steps.
"""

from __future__ import annotations

MAX_UPDATES = 2**31 - 1  # learners count their updates in a 32-bit integer (TrainState.step)
MAX_EVALUATIONS = 10_000  # per run: each evaluation runs episodes; more is a typo, not a protocol
MAX_SEED = 2**32 - 1  # jax.random.PRNGKey keeps 32 bits: seed 2**32 would silently equal seed 0


def is_evaluation_step(step: int, interval: int, offline_steps: int, online_steps: int) -> bool:
    return step > 0 and (step % interval == 0 or step in (offline_steps, offline_steps + online_steps))


def count_evaluations(interval: int, offline_steps: int, online_steps: int) -> int:
    """How many evaluations the schedule holds (O(1))."""
    total = offline_steps + online_steps
    ends = {s for s in (offline_steps, total) if s > 0 and s % interval}
    return total // interval + len(ends)


def evaluation_steps(interval: int, offline_steps: int, online_steps: int) -> list[int]:
    """Every step at which the run evaluates, in order; ValueError past MAX_EVALUATIONS (never materialised)."""
    count = count_evaluations(interval, offline_steps, online_steps)
    if count > MAX_EVALUATIONS:
        raise ValueError(f"the schedule holds {count:,} evaluations, more than {MAX_EVALUATIONS:,}")
    total = offline_steps + online_steps
    steps = set(range(interval, total + 1, interval)) | {s for s in (offline_steps, total) if s > 0}
    return sorted(steps)


def last_evaluations(interval: int, offline_steps: int, online_steps: int, up_to: int, k: int) -> list[int]:
    """The last ``k`` scheduled steps at or before ``up_to``, in order (O(k): the last k multiples and the ends)."""
    last = up_to // interval
    multiples = {interval * j for j in range(max(1, last - k + 1), last + 1)}
    ends = {s for s in (offline_steps, offline_steps + online_steps) if 0 < s <= up_to}
    return sorted(multiples | ends)[-k:]
