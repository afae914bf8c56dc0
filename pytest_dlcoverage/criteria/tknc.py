"""TKNC, top-k neuron coverage (Ma et al., "DeepGauge", ASE 2018).

For each input and each layer, the k neurons with the largest values are covered
(all of the layer's neurons when it has k or fewer); coverage is the neurons that
were ever among a layer's top k, divided by all neurons. TKNC needs no training
profile.

Ties are broken by position: among equal values the neuron that comes first in the
layer ranks higher. The choice depends only on the one input's values, so coverage
stays independent of the order and batching of inputs. DeepGauge's top-k patterns
(TKNP, distinct network-wide top-k sets) are not implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layout import ActivationBatch
from ._checks import checked_values, positive_int, unknown_params
from .base import BitsetCriterion, register


@register
class TopKNeuronCoverage(BitsetCriterion):
    """Top-k neuron coverage.

    Parameters (keyword arguments of the constructor):
        k: neurons covered per input and layer, a positive integer. Default 3.
    """

    name = "tknc"
    needs_profile = False

    @classmethod
    def validate_params(cls, **params: Any) -> dict[str, Any]:
        unknown_params(cls.name, params, ("k",))
        return {"k": positive_int(cls.name, "k", params.get("k", 3))}

    def _update(self, batch: ActivationBatch) -> None:
        values = checked_values(self.name, batch)
        k = self.params["k"]
        rows = np.arange(len(values))
        for columns in self.layout.slices().values():
            if columns.stop - columns.start <= k:
                self.covered_[columns, 0] = True
                continue
            # k rounds of argmax instead of a full sort: argmax returns the first of equal
            # values, which is the tie rule, and a taken neuron is set to -inf (activations
            # are finite) so that the next round finds the next one.
            layer = values[:, columns].copy()
            for _ in range(k):
                top = layer.argmax(axis=1)
                self.covered_[columns.start + top, 0] = True
                layer[rows, top] = -np.inf
