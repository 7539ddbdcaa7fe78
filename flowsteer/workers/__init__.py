"""Ray actors: the learner and the rollout workers (they also run in-process)."""
