"""The names Q-chunking gives the chunked variants of its methods (Li, Zhou, Levine 2025, arXiv 2507.07969;
ColinQiyangLi/qc README.md): the column a run takes when its action chunk H is above 1 (docs/chunking.md)."""

from __future__ import annotations

# flowsteer algorithm -> its column at H > 1. bfn with H > 1 is QC itself (best-of-N over chunks); rlpd takes two
# names, by whether its actor has the behaviour-cloning term of QC-RLPD (bc_alpha > 0) or not (RLPD-AC).
CHUNKED: dict[str, str] = {"fql": "qc-fql", "bfn": "qc", "ifql": "qc-ifql"}


def variant_name(algorithm: str, action_chunk: int, bc_alpha: float = 0.0) -> str:
    """The column of a run: its algorithm at H = 1, QC's name for its variant at H > 1 (the algorithm itself
    where QC names none: runs of one algorithm that differ in H are still split by method_labels)."""
    if action_chunk <= 1:
        return algorithm
    if algorithm == "rlpd":
        return "qc-rlpd" if bc_alpha > 0 else "rlpd-ac"
    return CHUNKED.get(algorithm, algorithm)
