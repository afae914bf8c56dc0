"""KMNC, k-multisection neuron coverage (Ma et al., "DeepGauge", ASE 2018).

Each neuron's training range [low, high] is split into k sections of equal width; a
value v in the range hits section floor((v - low) / (high - low) * k), the value
v == high belonging to the last section. Values outside the range hit no section
(they are what NBC counts). Coverage is sections hit / (k * neurons).

A neuron whose training range is a single point (high == low, typically a ReLU unit
that was 0 on every training input) has only sections of zero width: none of them
can be hit, whatever the test inputs, and its k sections still count in the total.
Crediting such a neuron with a section whenever it repeats its one training value
would reward dead units for staying dead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..layout import ActivationBatch, NeuronLayout
from ._checks import checked_values, positive_int, unknown_params
from .base import register
from .nbc import RangeCriterion

if TYPE_CHECKING:
    from ..profile import TrainingProfile


@register
class KMultisectionCoverage(RangeCriterion):
    """K-multisection neuron coverage over the training profile's ranges.

    Parameters (keyword arguments of the constructor):
        k: sections per neuron, a positive integer. Default 1000.
    """

    name = "kmnc"

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        super().__init__(layout, profile, **params)
        if profile is not None:
            self._width = self._high - self._low

    @classmethod
    def validate_params(cls, **params: Any) -> dict[str, Any]:
        unknown_params(cls.name, params, ("k",))
        return {"k": positive_int(cls.name, "k", params.get("k", 1000))}

    def cells_per_neuron(self) -> int:
        return self.params["k"]

    def _update(self, batch: ActivationBatch) -> None:
        values = checked_values(self.name, batch)
        k = self.params["k"]
        inside = (values >= self._low) & (values <= self._high) & (self._width > 0)
        rows, neurons = np.nonzero(inside)
        # For float32 activations, v - low and its product with k are exact in float64
        # (unless the two differ in magnitude by more than 2**29), so the division is
        # the one rounding step: a value on a section boundary (an integer quotient)
        # lands in the upper section as defined, where (v - low) / width * k can fall
        # just short of the integer.
        offset = values[rows, neurons] - self._low[neurons]
        sections = np.floor(offset * k / self._width[neurons]).astype(np.int64)
        # v == high gives section k; it belongs to the last one.
        np.minimum(sections, k - 1, out=sections)
        self.covered_[neurons, sections] = True
