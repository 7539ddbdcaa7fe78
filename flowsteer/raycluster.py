"""Joining Ray: the one place that decides which cluster a flowsteer process uses."""

from __future__ import annotations

import os


def ensure_ray() -> bool:
    """Connect this process to Ray unless it already is; returns whether this call started it (the caller then
    shuts it down). A private local cluster unless the user points at one (RAY_ADDRESS): never join by accident."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or "local"
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return True
