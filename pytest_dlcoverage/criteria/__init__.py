"""The coverage criteria, each registered in `REGISTRY` under its name.

Importing this package imports every criterion module so that the registry is
complete: NC (`nc`), KMNC (`kmnc`), NBC and SNAC (`nbc`, `snac`), TKNC (`tknc`) and
IDC (`idc`).
"""

from __future__ import annotations

from . import idc, kmnc, nbc, nc, tknc
from .base import REGISTRY, BitsetCriterion, Criterion, register
from .idc import ImportanceDrivenCoverage
from .kmnc import KMultisectionCoverage
from .nbc import NeuronBoundaryCoverage, StrongNeuronActivationCoverage
from .nc import NeuronCoverage
from .tknc import TopKNeuronCoverage

__all__ = [
    "REGISTRY",
    "BitsetCriterion",
    "Criterion",
    "ImportanceDrivenCoverage",
    "KMultisectionCoverage",
    "NeuronBoundaryCoverage",
    "NeuronCoverage",
    "StrongNeuronActivationCoverage",
    "TopKNeuronCoverage",
    "idc",
    "kmnc",
    "nbc",
    "nc",
    "register",
    "tknc",
]
