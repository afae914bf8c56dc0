"""The training profile: what the criteria need to know about the training data.

Per neuron of the layout: minimum, maximum, mean and standard deviation over the
training inputs, accumulated in one streaming pass (Chan et al.'s pairwise update of
mean and sum of squared deviations, so batches combine exactly in any grouping).
For IDC the profile also holds the importance profile of the subject layer (see
`importance.py`).

A profile carries the fingerprint of the model's weights, the training data and the
settings it was built with; `save` and `load` keep it on disk so that a later run
with the same fingerprint reuses it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DLCoverageError
from .fileio import atomic_write
from .layout import NeuronLayout

if TYPE_CHECKING:
    from .importance import ImportanceProfile

PROFILE_FORMAT = 1


@dataclass
class RangeStats:
    """Streaming per-neuron statistics of activations.

    Attributes:
        count: inputs seen.
        low, high: per-neuron minimum and maximum, shape `(neurons,)`, float64.
        mean: per-neuron mean, shape `(neurons,)`, float64.
        m2: per-neuron sum of squared deviations from the mean, shape `(neurons,)`.
    """

    count: int
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, neurons: int) -> RangeStats:
        """Returns the statistics of no inputs."""
        return cls(
            0,
            np.full(neurons, np.inf),
            np.full(neurons, -np.inf),
            np.zeros(neurons),
            np.zeros(neurons),
        )

    def add(self, values: np.ndarray) -> None:
        """Adds a batch of activations, shape `(batch_size, neurons)`."""
        if len(values) == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        batch_mean = values.mean(axis=0)
        batch_m2 = ((values - batch_mean) ** 2).sum(axis=0)
        self._combine(len(values), values.min(axis=0), values.max(axis=0), batch_mean, batch_m2)

    def merge(self, other: RangeStats) -> None:
        """Adds the statistics of other inputs."""
        if other.count:
            self._combine(other.count, other.low, other.high, other.mean, other.m2)

    def _combine(self, n: int, low, high, mean, m2) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.low = np.minimum(self.low, low)
        self.high = np.maximum(self.high, high)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Returns the population standard deviation per neuron."""
        return np.sqrt(self.m2 / self.count) if self.count else np.full_like(self.m2, np.nan)


@dataclass
class TrainingProfile:
    """Everything the criteria learn from the training data.

    Attributes:
        fingerprint: hex digest of the model's weights, the training data and the
            settings; two profiles with the same fingerprint are interchangeable.
        layout: the measured layers.
        ranges: per-neuron statistics over the training inputs.
        importance: IDC's important neurons and their clusters, or `None` when IDC
            was not requested.
        settings: the settings that went into the fingerprint, for display.
    """

    fingerprint: str
    layout: NeuronLayout
    ranges: RangeStats
    importance: ImportanceProfile | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def low(self) -> np.ndarray:
        """Returns the per-neuron training minimum, shape `(layout.size,)`."""
        return self.ranges.low

    @property
    def high(self) -> np.ndarray:
        """Returns the per-neuron training maximum, shape `(layout.size,)`."""
        return self.ranges.high

    def save(self, path: str | os.PathLike) -> None:
        """Writes the profile to `path` (an `.npz` file) atomically."""
        arrays: dict[str, np.ndarray] = {
            "low": self.ranges.low,
            "high": self.ranges.high,
            "mean": self.ranges.mean,
            "m2": self.ranges.m2,
        }
        meta: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "fingerprint": self.fingerprint,
            "layout": self.layout.to_json(),
            "count": self.ranges.count,
            "settings": self.settings,
            "importance": None,
        }
        if self.importance is not None:
            imp_meta, imp_arrays = self.importance.to_arrays()
            meta["importance"] = imp_meta
            arrays.update({f"importance/{k}": v for k, v in imp_arrays.items()})
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingProfile:
        """Returns the profile saved at `path`.

        Raises:
            DLCoverageError: the file is missing, unreadable or of another format.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes())
                arrays = {k: data[k] for k in data.files if k != "meta"}
            if meta.get("format") != PROFILE_FORMAT:
                raise DLCoverageError(
                    f"profile {path} has format {meta.get('format')}; expected {PROFILE_FORMAT}"
                )
            ranges = RangeStats(
                int(meta["count"]), arrays["low"], arrays["high"], arrays["mean"], arrays["m2"]
            )
            importance = None
            if meta["importance"] is not None:
                from .importance import ImportanceProfile

                prefix = "importance/"
                importance = ImportanceProfile.from_arrays(
                    meta["importance"],
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
                )
            return cls(
                meta["fingerprint"],
                NeuronLayout.from_json(meta["layout"]),
                ranges,
                importance,
                meta["settings"],
            )
        except DLCoverageError:
            raise
        except Exception as error:  # any failure to read means the file cannot be trusted
            raise DLCoverageError(f"cannot read training profile {path}: {error!r}") from None
