"""Checks shared by the neuron-coverage criteria: activations and training ranges that
cannot give a trustworthy number are refused with an error instead of being counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import DLCoverageError
from ..layout import ActivationBatch, NeuronLayout

if TYPE_CHECKING:
    from ..profile import TrainingProfile


def checked_values(criterion: str, batch: ActivationBatch) -> np.ndarray:
    """Returns the batch's activations as float64 after checking their shape and values.

    Args:
        criterion: the criterion's name, for error messages.
        batch: activations of shape `(batch_size, layout.size)`.

    Returns:
        The activations, float64, shape `(batch_size, layout.size)`.

    Raises:
        DLCoverageError: the shape does not match the layout, or a value is NaN or
            infinite (the message names the layer, input and neuron).
    """
    values = np.asarray(batch.values)
    expected = (len(batch), batch.layout.size)
    if values.ndim != 2 or values.shape != expected:
        raise DLCoverageError(
            f"{criterion}: expected activations of shape (batch_size, {batch.layout.size}) "
            f"for layers {list(batch.layout.names)}; received shape {values.shape}"
        )
    finite = np.isfinite(values)
    if not finite.all():
        row, column = (int(i[0]) for i in np.nonzero(~finite))
        layer = int(batch.layout.layer_of_neuron()[column])
        name = batch.layout.names[layer]
        neuron = column - batch.layout.offsets[layer]
        raise DLCoverageError(
            f"{criterion}: expected finite activations; received {values[row, column]} in "
            f"layer {name!r} (input {row} of the batch, neuron {neuron})"
        )
    return values.astype(np.float64, copy=False)


def checked_bounds(
    criterion: str, layout: NeuronLayout, profile: TrainingProfile
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the training range of every neuron after checking that it is usable.

    Args:
        criterion: the criterion's name, for error messages.
        layout: the criterion's layout; the profile must have been built for it.
        profile: the training profile.

    Returns:
        `(low, high)`, float64 arrays of shape `(layout.size,)`.

    Raises:
        DLCoverageError: the profile's layout differs from `layout`, or a range is not
            finite (a profile built from no inputs, or from non-finite activations).
    """
    if profile.layout != layout:
        raise DLCoverageError(
            f"{criterion}: expected a training profile of layers {list(layout.names)} "
            f"with sizes {list(layout.sizes)}; received one of layers "
            f"{list(profile.layout.names)} with sizes {list(profile.layout.sizes)}"
        )
    low = np.asarray(profile.low, dtype=np.float64)
    high = np.asarray(profile.high, dtype=np.float64)
    if low.shape != (layout.size,) or high.shape != (layout.size,):
        raise DLCoverageError(
            f"{criterion}: expected training ranges of shape ({layout.size},); "
            f"received low {low.shape} and high {high.shape}"
        )
    bad = ~(np.isfinite(low) & np.isfinite(high) & (low <= high))
    if bad.any():
        column = int(np.flatnonzero(bad)[0])
        layer = int(layout.layer_of_neuron()[column])
        raise DLCoverageError(
            f"{criterion}: expected a finite training range low <= high for every neuron; "
            f"received [{low[column]}, {high[column]}] for neuron "
            f"{column - layout.offsets[layer]} of layer {layout.names[layer]!r} "
            f"(profile built from {profile.ranges.count} inputs)"
        )
    return low, high


def positive_int(criterion: str, param: str, value: object) -> int:
    """Returns `value` as an int after checking that it is a positive integer.

    Raises:
        DLCoverageError: `value` is not an integer (booleans included) or is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DLCoverageError(
            f"{criterion}: {param} must be a positive integer; received {param}={value!r}"
        )
    return int(value)


def finite_float(criterion: str, param: str, value: object) -> float:
    """Returns `value` as a float after checking that it is a finite real number.

    Raises:
        DLCoverageError: `value` is not a real number (booleans included) or not finite.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
    ):
        raise DLCoverageError(
            f"{criterion}: {param} must be a finite number; received {param}={value!r}"
        )
    return float(value)


def unknown_params(criterion: str, params: dict, known: tuple[str, ...]) -> None:
    """Raises `DLCoverageError` naming any parameter of `params` not in `known`."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise DLCoverageError(
            f"{criterion}: expected parameters among {list(known)}; received unknown {unknown}"
        )
