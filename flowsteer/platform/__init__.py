"""One run: a validated RunSpec, the run loop, checkpoints and tracking."""
