"""NC, neuron coverage (Pei et al., "DeepXplore", SOSP 2017).

A neuron is covered once some input drives it above a threshold. In the scaled mode
of DeepXplore (the default) each input's values are first scaled, layer by layer, to
[0, 1] by that layer's minimum and maximum for that input; in the raw mode the
threshold applies to the activation itself, 0 by default. NC needs no training profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DLCoverageError
from ..layout import ActivationBatch, NeuronLayout
from ._checks import checked_values, finite_float, unknown_params
from .base import BitsetCriterion, register

if TYPE_CHECKING:
    from ..profile import TrainingProfile

SCALED_THRESHOLD = 0.75
RAW_THRESHOLD = 0.0


@register
class NeuronCoverage(BitsetCriterion):
    """Neuron coverage: the fraction of neurons that some input activated.

    Parameters (keyword arguments of the constructor):
        threshold: a neuron is covered by a value strictly above it; in [0, 1] when
            `scaled`, any finite number otherwise. Default 0.75 when `scaled`; 0.0 in
            the raw mode, where any positive activation (an active ReLU) covers.
        scaled: scale each input's values per layer to [0, 1] before comparing
            (DeepXplore's definition). Default true. A layer whose values are all
            equal for an input has no spread to scale by; its scaled values are 0 for
            that input, so it covers nothing there.
    """

    name = "nc"
    needs_profile = False

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        super().__init__(layout, profile, **params)
        self._offsets = np.asarray(layout.offsets)
        self._sizes = np.asarray(layout.sizes)

    @classmethod
    def validate_params(cls, **params: Any) -> dict[str, Any]:
        unknown_params(cls.name, params, ("threshold", "scaled"))
        scaled = params.get("scaled", True)
        if not isinstance(scaled, (bool, np.bool_)):
            raise DLCoverageError(f"nc: scaled must be true or false; received scaled={scaled!r}")
        default = SCALED_THRESHOLD if scaled else RAW_THRESHOLD
        threshold = finite_float(cls.name, "threshold", params.get("threshold", default))
        if scaled and not 0.0 <= threshold <= 1.0:
            raise DLCoverageError(
                "nc: threshold must be in [0, 1] when scaled=True (scaled values lie in "
                f"[0, 1]); received threshold={threshold!r}"
            )
        return {"threshold": threshold, "scaled": bool(scaled)}

    def _update(self, batch: ActivationBatch) -> None:
        values = checked_values(self.name, batch)
        if self.params["scaled"]:
            values = self._scaled(values)
        self.covered_[:, 0] |= (values > self.params["threshold"]).any(axis=0)

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        """Returns `values` (batch_size, layout.size) min-max scaled per input and layer."""
        low = np.minimum.reduceat(values, self._offsets, axis=1)
        spread = np.maximum.reduceat(values, self._offsets, axis=1) - low
        # A constant layer has values - low == 0 everywhere, so dividing by 1 instead of
        # its zero spread gives the documented scaled value 0.
        spread[spread == 0] = 1.0
        shifted = values - np.repeat(low, self._sizes, axis=1)
        return shifted / np.repeat(spread, self._sizes, axis=1)
