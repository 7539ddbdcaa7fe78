"""Base policies that DSRL steers: the interface (interface.py), torch policies loaded from files
(torch_policy.py) in the format of fileformat.py (docs/base-policies.md), a torch DDPM/DDIM trainer (ddpm.py) and
Ray-actor serving (serving.py). torch is imported only by the torch modules, and only when one of them is used
(the `flowsteer[torch]` extra)."""
