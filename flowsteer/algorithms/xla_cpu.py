"""Two changes to how XLA compiles our updates on CPU; neither changes a single number.

1. Random numbers. JAX lowers its Threefry hash on CPU as a rolled 5-iteration while loop (it compiles faster).
   XLA's CPU runtime executes every loop iteration as a dozen tiny kernels plus copies of the loop state, and
   an FQL update draws random numbers 13 times: about 580 of the 1,270 kernels of one update were Threefry
   loops, all of them on the critical path before the first matmul. The unrolled lowering, which JAX already
   uses on GPU, computes the same bits in one fused kernel.
2. Copies in the scanned update. Without region analysis, XLA's copy insertion copies most of the carried
   state (parameters, Adam moments) at every iteration of the chunk's loop; with it, those copies go.

Measured on an FQL update at the paper's sizes, A/B in the same minutes: about 3% more updates/s (benchmarks/
bench_algorithms_results.md).

The first change replaces a lowering rule for the whole process, so importing flowsteer never makes it: the run
loop and the benchmarks call `apply_cpu_tweaks()` before they compile anything. FLOWSTEER_XLA_CPU_TWEAKS=0 keeps
stock JAX and XLA (both changes off).
"""

from __future__ import annotations

import functools
import os
import warnings

OPT_OUT = "FLOWSTEER_XLA_CPU_TWEAKS"  # "0" turns both changes off

# Passed to jax.jit; a DebugOptions field, so other backends accept and ignore it.
CPU_COMPILER_OPTIONS: dict[str, bool] = {"xla_cpu_copy_insertion_use_region_analysis": True}


def tweaks_enabled() -> bool:
    return os.environ.get(OPT_OUT, "1").strip() != "0"


def compiler_options() -> dict[str, bool]:
    """The options flowsteer's own jax.jit calls pass: CPU_COMPILER_OPTIONS unless the user opted out."""
    return dict(CPU_COMPILER_OPTIONS) if tweaks_enabled() else {}


@functools.cache
def apply_cpu_tweaks() -> bool:
    """Unroll Threefry on CPU for this process, once, unless FLOWSTEER_XLA_CPU_TWEAKS=0; returns whether it did.
    Call it before the first compile: a program already compiled keeps the lowering it was compiled with."""
    return tweaks_enabled() and unroll_threefry_on_cpu()


def unroll_threefry_on_cpu() -> bool:
    """Lower Threefry on CPU with JAX's unrolled rule. Returns whether it took effect; JAX moves private
    modules between versions, so a missing one only warns and leaves the (equally correct) rolled loop."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
    except ImportError as exc:  # pragma: no cover - depends on the installed JAX
        warnings.warn(f"flowsteer: keeping JAX's rolled Threefry on CPU ({exc})", stacklevel=2)
        return False
    rule = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    primitive = getattr(threefry2x32, "threefry2x32_p", None)
    if rule is None or primitive is None:  # pragma: no cover - depends on the installed JAX
        warnings.warn("flowsteer: keeping JAX's rolled Threefry on CPU (its lowering moved)", stacklevel=2)
        return False
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True
