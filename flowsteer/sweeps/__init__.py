"""Sweeps: a YAML file of algorithms x tasks x seeds x hyperparameters, run as Ray Tune trials."""
