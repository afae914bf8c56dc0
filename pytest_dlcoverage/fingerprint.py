"""Fingerprints that decide whether a cached training profile may be reused.

A profile depends on the model's architecture (each layer's settings and how the
layers connect) and weights, on the training data and on the settings. Each part is
hashed with SHA-256.

A name does not identify a model: two models of one name may differ, and Keras numbers
unnamed models and inputs in order of creation, so the same model built in two
processes may be named differently. The model's own name and the names of its input
layers are therefore left out; layer names stay, since the profile is kept per layer.

The architecture is read from Keras's own `get_config()` of the model and of each
layer. What that leaves out is missing from the fingerprint too: the `call` method of a
subclassed model, so two subclassed models that wire the same layers differently share
a fingerprint.
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


def _config(owner: Any) -> Any:
    """Returns `owner.get_config()`, or `None` where Keras cannot describe it (a custom
    layer or subclassed model whose constructor takes values it cannot serialise)."""
    try:
        return owner.get_config()
    except (NotImplementedError, TypeError):
        return None


def _input_names(node: Any, found: list[str]) -> list[str]:
    """Returns the names of the input layers described in `node`, walking keys in sorted
    order so that the order found is the same in every process."""
    if isinstance(node, dict):
        config = node.get("config")
        if node.get("class_name") == "InputLayer" and isinstance(config, dict):
            found.append(config.get("name"))
        for key in sorted(node, key=str):
            _input_names(node[key], found)
    elif isinstance(node, list | tuple):
        for item in node:
            _input_names(item, found)
    return found


def _renamed(node: Any, names: dict[str, str]) -> Any:
    """Returns `node` with every string that is a key of `names` replaced by its value."""
    if isinstance(node, dict):
        return {key: _renamed(value, names) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_renamed(item, names) for item in node]
    if isinstance(node, str):
        return names.get(node, node)
    return node


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    # A value that JSON cannot hold is named by its type alone: its repr may hold a memory
    # address, which differs from process to process.
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def architecture(model: Any) -> str:
    """Returns the model's architecture as deterministic JSON: the model's `get_config()`
    without its own name, and each layer's type, name and `get_config()`.

    The layers are listed besides the model's configuration because a subclassed model's
    configuration names none of them. Input layers, which `keras.Input` numbers in order
    of creation, are renamed by their order in the description.
    """
    config = _config(model)
    if isinstance(config, dict):
        config = {key: value for key, value in config.items() if key != "name"}
    layers = [
        {"class_name": type(layer).__name__, "name": layer.name, "config": _config(layer)}
        for layer in model.layers
    ]
    description = {"model": config, "layers": layers}
    inputs = dict.fromkeys(_input_names(description, []))
    names = {name: f"<input {i}>" for i, name in enumerate(inputs) if isinstance(name, str)}
    return json.dumps(_renamed(description, names), sort_keys=True, default=_json_value)


def model_fingerprint(model: Any) -> str:
    """Returns a digest of the model's architecture and every weight's value."""
    digest = hashlib.sha256()
    digest.update(architecture(model).encode())
    # By position, not name: the architecture names the layers, input layers renamed.
    for index, layer in enumerate(model.layers):
        digest.update(f"layer {index}".encode())
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
