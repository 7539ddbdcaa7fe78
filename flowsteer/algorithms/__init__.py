"""Pure JAX learners: one file per algorithm, shared pieces written once."""
