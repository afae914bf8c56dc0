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
        for columns in self.layout.slices().values():
            layer = values[:, columns]
            if layer.shape[1] <= k:
                self.covered_[columns, 0] = True
                continue
            # A stable sort of the negated values ranks equal values by position.
            top = np.argsort(-layer, axis=1, kind="stable")[:, :k]
            self.covered_[columns.start + top.ravel(), 0] = True
