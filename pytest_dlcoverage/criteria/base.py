"""The state every coverage criterion keeps, and how states merge and serialise.

A criterion object is both its settings (parameters, layout, training profile) and
its exact state (what has been covered so far). `update` only ever adds to the
state, so coverage is a union over inputs: it cannot fall when inputs are added and
does not depend on their order or batching. Two states of the same criterion,
settings and profile merge by union; this is how states from several processes
(pytest-xdist workers) or several suites are combined.

A serialised state is `MAGIC`, a 4-byte little-endian header length, a UTF-8 JSON
header (criterion, parameters, layout, profile fingerprint, inputs seen) and the
criterion's payload.
"""

from __future__ import annotations

import json
import struct
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import DLCoverageError, IncompatibleStateError
from ..layout import ActivationBatch, NeuronLayout
from ..results import Coverage

if TYPE_CHECKING:
    from ..profile import TrainingProfile

MAGIC = b"DLCS1"
# A bitset criterion keeps one byte per cell while measuring; beyond this many cells
# (2 GiB) a parameter is almost certainly a typo (KMNC k = 10**9) rather than a wish.
MAX_CELLS = 2**31
REGISTRY: dict[str, type[Criterion]] = {}


def register(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator that makes a criterion available by its `name`."""
    REGISTRY[cls.name] = cls
    return cls


class Criterion(ABC):
    """One coverage criterion with its exact, incremental state.

    Args:
        layout: the neurons the criterion measures.
        profile: the training profile; criteria whose `needs_profile` is true
            cannot be updated without one.
        **params: the criterion's own parameters (see each subclass).
    """

    name: ClassVar[str]
    needs_profile: ClassVar[bool] = True

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        self.layout = layout
        self.profile = profile
        self.params = self.validate_params(**params)
        self.inputs = 0
        self._fingerprint = profile.fingerprint if profile is not None else None

    # -- what subclasses provide ------------------------------------------------------

    @classmethod
    def validate_params(cls, **params: Any) -> dict[str, Any]:
        """Returns the complete, validated parameters; raises `DLCoverageError`."""
        if params:
            raise DLCoverageError(f"{cls.name} takes no parameters; received {sorted(params)}")
        return {}

    @abstractmethod
    def _update(self, batch: ActivationBatch) -> None:
        """Adds what `batch` covers to the state."""

    @abstractmethod
    def coverage(self) -> Coverage:
        """Returns covered and total over the whole layout."""

    def per_layer(self) -> dict[str, Coverage]:
        """Returns covered and total per layer, in layout order."""
        raise NotImplementedError(f"{self.name} has no per-layer breakdown")

    @abstractmethod
    def _merge(self, other: Criterion) -> None:
        """Unites `other`'s state (already checked compatible) into this one."""

    @abstractmethod
    def _payload(self) -> bytes:
        """Returns the state as bytes."""

    @abstractmethod
    def _load_payload(self, payload: bytes) -> None:
        """Replaces the (empty) state by the one `_payload` wrote."""

    # -- shared behaviour -------------------------------------------------------------

    @property
    def profile_fingerprint(self) -> str | None:
        """Returns the fingerprint of the profile the state depends on, if any."""
        return self._fingerprint if self.needs_profile else None

    def update(self, batch: ActivationBatch) -> None:
        """Adds the coverage of one batch of activations.

        Args:
            batch: activations of shape `(batch_size, layout.size)` in this
                criterion's layout.
        """
        if batch.layout != self.layout:
            raise DLCoverageError(
                f"{self.name}: the activations' layout does not match the criterion's; "
                f"expected layers {list(self.layout.names)}, received {list(batch.layout.names)}"
            )
        if self.needs_profile and self.profile is None:
            raise DLCoverageError(
                f"{self.name} needs a training profile; build one with CoverageMeter.fit "
                "before measuring"
            )
        if len(batch) == 0:
            return
        self._update(batch)
        self.inputs += len(batch)

    def empty_copy(self) -> Criterion:
        """Returns a criterion with the same settings and an empty state."""
        return type(self)(self.layout, self.profile, **self.params)

    def header(self) -> dict[str, Any]:
        """Returns what identifies the state's meaning (everything but the state)."""
        return {
            "criterion": self.name,
            "params": self.params,
            "layout": self.layout.to_json(),
            "profile": self.profile_fingerprint,
        }

    def merge(self, other: Criterion) -> None:
        """Unites `other`'s state into this one, in place.

        Raises:
            IncompatibleStateError: the criterion, parameters, layout or profile differ.
        """
        if self.header() != other.header():
            mine, theirs = self.header(), other.header()
            differ = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise IncompatibleStateError(
                f"cannot merge {other.name} state into {self.name} state: "
                f"they differ in {', '.join(differ)}"
            )
        self._merge(other)
        self.inputs += other.inputs

    def to_bytes(self) -> bytes:
        """Returns the settings and state as bytes, read back by `from_bytes`."""
        header = json.dumps({**self.header(), "inputs": self.inputs}, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + self._payload()

    @staticmethod
    def from_bytes(data: bytes, profile: TrainingProfile | None = None) -> Criterion:
        """Returns the criterion that `to_bytes` wrote.

        Args:
            data: bytes from `to_bytes`.
            profile: the training profile to attach; its fingerprint must match the
                one the state was measured with. Without it the state can be merged
                and reported, but not updated.
        """
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise DLCoverageError(
                f"expected a serialised criterion state starting with {MAGIC!r}; "
                f"received {len(data)} bytes starting with {data[: len(MAGIC)]!r}"
            )
        start = len(MAGIC) + 4
        (length,) = struct.unpack("<I", data[len(MAGIC) : start])
        try:
            header = json.loads(data[start : start + length])
            cls = REGISTRY[header["criterion"]]
        except (ValueError, KeyError) as error:
            raise DLCoverageError(f"unreadable criterion state header: {error}") from None
        if profile is not None and header["profile"] not in (None, profile.fingerprint):
            raise IncompatibleStateError(
                f"{header['criterion']} state was measured with profile {header['profile']}; "
                f"received profile {profile.fingerprint}"
            )
        criterion = cls(NeuronLayout.from_json(header["layout"]), profile, **header["params"])
        criterion._fingerprint = header["profile"]
        criterion._load_payload(data[start + length :])
        criterion.inputs = int(header["inputs"])
        return criterion


class BitsetCriterion(Criterion):
    """A criterion whose state is a fixed set of boolean cells, `cells_per_neuron` for
    each neuron of the layout (one for NC, k sections for KMNC, two corners for NBC).

    The state is the boolean array `covered_` of shape `(layout.size, cells_per_neuron)`;
    merging is a logical or.
    """

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        super().__init__(layout, profile, **params)
        cells = layout.size * self.cells_per_neuron()
        if cells > MAX_CELLS:
            raise DLCoverageError(
                f"{self.name}: {layout.size} neurons with {self.cells_per_neuron()} cells each "
                f"make {cells} cells ({cells / 2**30:.0f} GiB); expected at most {MAX_CELLS}. "
                f"Received parameters {self.params}"
            )
        self.covered_ = np.zeros((layout.size, self.cells_per_neuron()), dtype=bool)

    def cells_per_neuron(self) -> int:
        """Returns how many cells each neuron has; 1 unless a subclass says otherwise."""
        return 1

    def coverage(self) -> Coverage:
        return Coverage(int(np.count_nonzero(self.covered_)), int(self.covered_.size))

    def per_layer(self) -> dict[str, Coverage]:
        return {
            name: Coverage(int(np.count_nonzero(self.covered_[s])), int(self.covered_[s].size))
            for name, s in self.layout.slices().items()
        }

    def _merge(self, other: Criterion) -> None:
        assert isinstance(other, BitsetCriterion)
        self.covered_ |= other.covered_

    def _payload(self) -> bytes:
        return np.packbits(self.covered_.ravel()).tobytes()

    def _load_payload(self, payload: bytes) -> None:
        expected = -(-self.covered_.size // 8)
        if len(payload) != expected:
            # unpackbits would silently pad a truncated payload with uncovered cells.
            raise DLCoverageError(
                f"{self.name} state payload must hold {expected} bytes for "
                f"{self.covered_.size} cells; received {len(payload)} bytes"
            )
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=self.covered_.size)
        self.covered_ = bits.astype(bool).reshape(self.covered_.shape)
