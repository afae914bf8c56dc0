"""Fingerprints that decide whether a cached training profile may be reused.

A profile depends on the model's weights (not its name: two models of one name with
different weights must never share a profile), on the training data and on the
settings. Each part is hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import DLCoverageError
from .inputs import iter_batches


def _update_array(digest: Any, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)


def model_fingerprint(model: Any) -> str:
    """Returns a digest of the model's architecture and every weight's value."""
    digest = hashlib.sha256()
    # Layer by layer, without the model's own name: Keras numbers unnamed models in order
    # of creation, so the same model built in two processes may be named differently.
    for layer in model.layers:
        digest.update(f"{type(layer).__name__}:{layer.name}".encode())
        for weight in layer.weights:
            digest.update(weight.name.encode())
            _update_array(digest, np.asarray(weight.numpy()))
    return digest.hexdigest()


def data_fingerprint(x: Any, y: Any = None, *, input_rank: int | None = None) -> str:
    """Returns a digest of inputs and labels, batch by batch.

    Raises:
        DLCoverageError: when `x` is a one-shot iterator, which could not be read again
            to build the profile after hashing.
    """
    if isinstance(x, Iterable) and iter(x) is x:
        raise DLCoverageError(
            "expected training data that can be read more than once (an array, a list of "
            f"batches or a tf.data.Dataset); received a one-shot iterator {type(x).__name__}"
        )
    digest = hashlib.sha256()
    for inputs, labels in iter_batches(x, y, batch_size=4096, input_rank=input_rank):
        _update_array(digest, inputs)
        if labels is not None:
            _update_array(digest, labels)
    return digest.hexdigest()


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Returns a digest of JSON-serialisable settings, independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def combine(*parts: str) -> str:
    """Returns one digest of several digests."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
