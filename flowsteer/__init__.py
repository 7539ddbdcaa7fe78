"""flowsteer: sweeps of offline and offline-to-online RL with generative policies."""

__version__ = "0.1.0"
