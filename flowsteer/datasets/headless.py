"""Silence two warnings that OGBench's imports print on every headless machine.

State observations need no display, so GLFW's missing-DISPLAY notice is noise; the Box precision notices
come from ogbench declaring float64 bounds for float32 spaces. Rendering still fails loudly if attempted.
"""

import warnings

warnings.filterwarnings("ignore", message=r".*DISPLAY environment variable is missing")
warnings.filterwarnings("ignore", message=r".*Box (low|high)'s precision lowered")
