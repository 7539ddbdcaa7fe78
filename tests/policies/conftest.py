"""Torch base-policy tests use the session's tiny torch policy (tests/conftest.py: `torch_policy`,
`torch_policy_file`, trained on the smoke dataset). torch is a required test dependency (scripts/setup.sh installs
the `flowsteer[torch]` extra): without it these tests fail, not skip."""
