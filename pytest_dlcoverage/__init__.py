"""pytest-dlcoverage: deep-learning test adequacy for pytest.

Criteria: NC, neuron coverage (Pei et al., DeepXplore, SOSP 2017); KMNC, NBC and SNAC,
k-multisection, neuron boundary and strong neuron activation coverage, and TKNC,
top-k neuron coverage (Ma et al., DeepGauge, ASE 2018); IDC, importance-driven
coverage (Gerasimou et al., DeepImportance, ICSE 2020).

Importing this package does not import TensorFlow; the engine's names load on first
use, so that pytest starts fast when coverage is off.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CoverageMeter": "engine",
    "DEFAULT_CRITERIA": "engine",
    "Coverage": "results",
    "TrainingProfile": "profile",
    "DLCoverageError": "errors",
    "DLCoverageWarning": "errors",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
