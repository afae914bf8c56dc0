"""NBC, neuron boundary coverage, and SNAC, strong neuron activation coverage (Ma et al.,
"DeepGauge", ASE 2018).

Both look at values outside a neuron's training range [low, high]. NBC gives every
neuron two corners: the lower one is hit by a value strictly below low, the upper one
by a value strictly above high; coverage is corners hit / (2 * neurons). SNAC counts
upper corners only: upper corners hit / neurons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..layout import ActivationBatch, NeuronLayout
from ._checks import checked_bounds, checked_values
from .base import BitsetCriterion, register

if TYPE_CHECKING:
    from ..profile import TrainingProfile


class RangeCriterion(BitsetCriterion):
    """A criterion measured against each neuron's training range [low, high] (KMNC, NBC,
    SNAC); the range is read and checked once, when the criterion is made."""

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        super().__init__(layout, profile, **params)
        if profile is not None:
            self._low, self._high = checked_bounds(self.name, layout, profile)


@register
class NeuronBoundaryCoverage(RangeCriterion):
    """Neuron boundary coverage. `covered_[:, 0]` are the lower corners, `covered_[:, 1]`
    the upper corners. Takes no parameters."""

    name = "nbc"

    def cells_per_neuron(self) -> int:
        return 2

    def _update(self, batch: ActivationBatch) -> None:
        values = checked_values(self.name, batch)
        self.covered_[:, 0] |= (values < self._low).any(axis=0)
        self.covered_[:, 1] |= (values > self._high).any(axis=0)


@register
class StrongNeuronActivationCoverage(RangeCriterion):
    """Strong neuron activation coverage: the upper corners of NBC. Takes no parameters."""

    name = "snac"

    def _update(self, batch: ActivationBatch) -> None:
        values = checked_values(self.name, batch)
        self.covered_[:, 0] |= (values > self._high).any(axis=0)
