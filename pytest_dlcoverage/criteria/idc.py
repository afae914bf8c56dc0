"""IDC, importance-driven coverage (Gerasimou et al., "Importance-Driven Deep Learning
System Testing", ICSE 2020, the DeepImportance tool).

The training profile's importance profile (see `importance.py`) names the m important
neurons of a subject layer and gives each a few sorted centroids, its typical
activation levels. Each test input maps, per important neuron, to the nearest centroid
(equal distances go to the lower centroid); the tuple of cluster indices is the
input's combination. IDC is the number of distinct combinations seen divided by the
number of possible combinations, the product of the cluster counts.

That product grows fast (up to 4^m), so combinations are counted, never enumerated:
each is encoded as one integer in mixed radix, the first important neuron most
significant, and the state is the sorted array of distinct codes. Codes are int64
while the product fits, Python integers (an object array) beyond. The subject layer's
activations are read from the very layer the clusters were learned on, with the same
channel-mean convention for convolutional layers.
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DLCoverageError, IncompatibleStateError
from ..layout import ActivationBatch, NeuronLayout
from ..results import Coverage
from ._checks import positive_int, unknown_params
from .base import Criterion, register

if TYPE_CHECKING:
    from ..importance import ImportanceProfile
    from ..profile import TrainingProfile

INT64_MAX = np.iinfo(np.int64).max


@register
class ImportanceDrivenCoverage(Criterion):
    """Importance-driven coverage: distinct cluster combinations of the important neurons.

    The important neurons and their centroids come from `profile.importance`, which
    must have been built with the same parameters.

    Parameters (keyword arguments of the constructor):
        m: number of important neurons, a positive integer. Default 6.
        layer: name of the subject layer, or `None` (default) for the input of the
            classifier head.

    Raises:
        DLCoverageError: the profile has no importance profile, or one built with a
            different `m` or `layer`.
    """

    name = "idc"
    needs_profile = True

    def __init__(
        self, layout: NeuronLayout, profile: TrainingProfile | None = None, **params: Any
    ) -> None:
        super().__init__(layout, profile, **params)
        self._subject: str | None = None
        self._counts: tuple[int, ...] | None = None
        if profile is not None:
            importance = self._checked_importance(profile)
            self._set_structure(importance.subject_layer, importance.cluster_counts)

    @classmethod
    def validate_params(cls, **params: Any) -> dict[str, Any]:
        unknown_params(cls.name, params, ("m", "layer"))
        m = positive_int(cls.name, "m", params.get("m", 6))
        layer = params.get("layer")
        if layer is not None and not isinstance(layer, str):
            raise DLCoverageError(
                f"idc: layer must be a layer name or None; received layer={layer!r}"
            )
        return {"m": m, "layer": layer}

    def _checked_importance(self, profile: TrainingProfile) -> ImportanceProfile:
        importance = profile.importance
        if importance is None:
            raise DLCoverageError(
                "idc: the training profile has no importance profile; build it with IDC among "
                "the criteria (and training labels)"
            )
        layer = self.params["layer"]
        if importance.m != self.params["m"] or layer not in (None, importance.subject_layer):
            raise DLCoverageError(
                f"idc: expected an importance profile with m={self.params['m']} and subject "
                f"layer {layer or '(default)'}; the training profile has m={importance.m} and "
                f"subject layer {importance.subject_layer!r}"
            )
        return importance

    def _set_structure(self, subject: str, counts: tuple[int, ...]) -> None:
        self._subject = subject
        self._counts = tuple(int(c) for c in counts)
        self._total = math.prod(self._counts)
        self._dtype = np.dtype(np.int64) if self._total - 1 <= INT64_MAX else np.dtype(object)
        self.codes_ = np.empty(0, dtype=self._dtype)

    def _require_structure(self) -> None:
        if self._counts is None:
            raise DLCoverageError(
                "idc: this state has neither a training profile nor a loaded state; "
                "create it with CoverageMeter.new_states()"
            )

    # -- measuring ----------------------------------------------------------------------

    def encode(self, clusters: np.ndarray) -> np.ndarray:
        """Returns the mixed-radix code of each combination of cluster indices.

        Args:
            clusters: cluster indices, shape `(batch_size, m)`, column j in
                `[0, cluster_counts[j])`.

        Returns:
            Codes in `[0, total)`, shape `(batch_size,)`, int64 (object when the
            number of combinations exceeds int64).
        """
        self._require_structure()
        codes = np.zeros(len(clusters), dtype=self._dtype)
        for j, count in enumerate(self._counts):
            codes = codes * count + clusters[:, j].astype(self._dtype)
        return codes

    def _update(self, batch: ActivationBatch) -> None:
        assert self.profile is not None and self.profile.importance is not None
        importance = self.profile.importance
        try:
            values = np.asarray(batch.layer(importance.subject_layer))
        except KeyError:
            raise DLCoverageError(
                f"idc: the activations hold no values of subject layer "
                f"{importance.subject_layer!r}; expected it among the measured layers "
                f"{list(batch.layout.names)} or the extra layers {sorted(batch.extra)}"
            ) from None
        if values.shape != (len(batch), importance.neurons):
            raise DLCoverageError(
                f"idc: expected subject layer {importance.subject_layer!r} activations of "
                f"shape ({len(batch)}, {importance.neurons}); received {values.shape}"
            )
        selected = values[:, importance.important].astype(np.float64)
        if not np.isfinite(selected).all():
            raise DLCoverageError(
                f"idc: expected finite activations of subject layer "
                f"{importance.subject_layer!r}; received NaN or infinity"
            )
        clusters = np.stack(
            [
                # argmin keeps the first of equally near centroids: the lower one.
                np.abs(selected[:, [j]] - centroids[None, :]).argmin(axis=1)
                for j, centroids in enumerate(importance.centroids)
            ],
            axis=1,
        )
        self.codes_ = np.union1d(self.codes_, np.unique(self.encode(clusters)))

    # -- results ------------------------------------------------------------------------

    @property
    def subject_layer(self) -> str | None:
        """Returns the name of the subject layer, once known."""
        return self._subject

    @property
    def cluster_counts(self) -> tuple[int, ...] | None:
        """Returns the number of clusters of each important neuron, once known."""
        return self._counts

    def coverage(self) -> Coverage:
        """Returns distinct combinations seen over all possible combinations."""
        self._require_structure()
        return Coverage(len(self.codes_), self._total)

    def max_reachable(self) -> int:
        """Returns the most combinations the inputs seen so far could cover: one per
        input, at most all of them."""
        self._require_structure()
        return min(self._total, self.inputs)

    def per_layer(self) -> dict[str, Coverage]:
        raise NotImplementedError(
            "idc measures one subject layer as a whole; its combinations have no per-layer "
            "breakdown"
        )

    def empty_copy(self) -> Criterion:
        copy = type(self)(self.layout, self.profile, **self.params)
        copy._fingerprint = self._fingerprint
        if self._counts is not None:
            copy._set_structure(self._subject, self._counts)
        return copy

    # -- merging and serialisation -------------------------------------------------------

    def _merge(self, other: Criterion) -> None:
        assert isinstance(other, ImportanceDrivenCoverage)
        self._require_structure()
        other._require_structure()
        if (self._subject, self._counts) != (other._subject, other._counts):
            raise IncompatibleStateError(
                f"cannot merge idc states of subject layer {other._subject!r} with clusters "
                f"{other._counts} into one of {self._subject!r} with clusters {self._counts}"
            )
        self.codes_ = np.union1d(self.codes_, other.codes_)

    def _code_width(self) -> int:
        return max(1, ((self._total - 1).bit_length() + 7) // 8)

    def _payload(self) -> bytes:
        # A header with the structure lets a state loaded without its profile still
        # report coverage; codes follow as fixed-width little-endian unsigned integers.
        self._require_structure()
        header = json.dumps({"subject_layer": self._subject, "cluster_counts": self._counts})
        width = self._code_width()
        if self._dtype == np.int64:
            raw = self.codes_.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
            body = raw.tobytes()
        else:
            body = b"".join(int(code).to_bytes(width, "little") for code in self.codes_)
        return struct.pack("<I", len(header)) + header.encode() + body

    def _load_payload(self, payload: bytes) -> None:
        (length,) = struct.unpack("<I", payload[:4])
        header = json.loads(payload[4 : 4 + length])
        subject, counts = header["subject_layer"], tuple(header["cluster_counts"])
        if self._counts is not None and (subject, counts) != (self._subject, self._counts):
            raise IncompatibleStateError(
                f"idc state of subject layer {subject!r} with clusters {counts} does not match "
                f"the profile's {self._subject!r} with clusters {self._counts}"
            )
        self._set_structure(subject, counts)
        body = payload[4 + length :]
        width = self._code_width()
        if len(body) % width:
            raise DLCoverageError(
                f"idc: expected a state body of {width}-byte codes; received {len(body)} bytes"
            )
        if self._dtype == np.int64:
            raw = np.zeros((len(body) // width, 8), dtype=np.uint8)
            raw[:, :width] = np.frombuffer(body, dtype=np.uint8).reshape(-1, width)
            self.codes_ = raw.view("<u8").ravel().astype(np.int64)
        else:
            codes = [
                int.from_bytes(body[i : i + width], "little") for i in range(0, len(body), width)
            ]
            self.codes_ = np.array(codes, dtype=object)
        self._check_codes()

    def _check_codes(self) -> None:
        # Coverage is the number of codes, so a repeated or impossible code would count
        # a combination twice or one that does not exist.
        codes = self.codes_
        if not len(codes):
            return
        unordered = int(np.count_nonzero(~np.asarray(codes[1:] > codes[:-1], dtype=bool)))
        if unordered:
            raise DLCoverageError(
                f"idc: expected a state of distinct codes in increasing order; received "
                f"{len(codes)} codes, {unordered} of them not above the code before"
            )
        if codes[0] < 0 or codes[-1] >= self._total:
            wrong = codes[0] if codes[0] < 0 else codes[-1]
            raise DLCoverageError(
                f"idc: expected codes in [0, {self._total}) for clusters {self._counts}; "
                f"received the code {wrong}"
            )


IDC = ImportanceDrivenCoverage
