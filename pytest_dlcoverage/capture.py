"""Activation capture: one forward pass gives the model's predictions and the values
of every measured neuron.

A neuron is a unit of a Dense layer or a channel (feature map) of a convolutional
layer, valued by the mean of the channel over its spatial positions (the convention
of DeepXplore and DeepImportance). The reduction runs inside the TensorFlow graph
and all measured layers are concatenated there, so only a `(batch, neurons)` matrix
reaches numpy, never the full feature maps.

Default layers: every post-activation output, that is ReLU, LeakyReLU, ELU, PReLU
and Activation layers with a non-linear activation, and Dense or convolutional
layers with a fused non-linear activation; the model's output layer is excluded
(its softmax would count the prediction, not the model's internal state). In a
ResNet this counts each block's ReLU once instead of counting the same values again
at BatchNormalization and Add.

Limits: one model input and one model output; channels-last feature maps; layers of
nested sub-models are not visible (name the sub-model as a whole instead).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .errors import DLCoverageError
from .inputs import iter_batches, validate_batch
from .layout import ActivationBatch, NeuronLayout

ACTIVATION_LAYERS = ("ReLU", "LeakyReLU", "ELU", "PReLU", "Activation", "Softmax")
LINEAR_ACTIVATIONS = ("linear", None)


def check_model(model: Any) -> None:
    """Raises `DLCoverageError` unless `model` is a built, single-input, single-output
    Keras 3 model."""
    import keras

    if not isinstance(model, keras.Model):
        raise DLCoverageError(
            f"expected a Keras 3 model (keras.Model); received {type(model).__module__}."
            f"{type(model).__name__}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise DLCoverageError(
            f"model {model.name!r} has no defined inputs; give it a keras.Input or call "
            "model.build(input_shape) before measuring coverage"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise DLCoverageError(
            f"expected a model with one input and one output; model {model.name!r} has "
            f"{len(inputs)} inputs and {len(outputs)} outputs"
        )


def _activation_name(layer: Any) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    import keras

    try:
        return keras.activations.serialize(activation)
    except (TypeError, ValueError):
        return getattr(activation, "__name__", type(activation).__name__)


def is_post_activation(layer: Any) -> bool:
    """Returns whether `layer`'s output is a post-activation output (see module docstring)."""
    kind = type(layer).__name__
    if kind in ACTIVATION_LAYERS:
        return kind != "Activation" or _activation_name(layer) not in LINEAR_ACTIVATIONS
    if kind.startswith(("Dense", "Conv", "SeparableConv", "DepthwiseConv")):
        return _activation_name(layer) not in LINEAR_ACTIVATIONS
    return False


def default_layers(model: Any) -> list[str]:
    """Returns the names of the default measured layers of `model`, in model order."""
    output_layers = {id(t._keras_history.operation) for t in model.outputs}
    return [
        layer.name
        for layer in model.layers
        if is_post_activation(layer) and id(layer) not in output_layers
    ]


def model_node(model: Any, layer: Any) -> Any:
    """Returns the node at which `model`'s own graph calls `layer`.

    `layer.output` is the output of the layer's first call, which is not always a call
    inside this model: a Sequential model loaded from a `.keras` file calls its layers
    once when it is rebuilt and once more in the graph it keeps. The node's
    `output_tensors` and `input_tensors` belong to the model's graph. A layer called
    several times in one model (a shared layer) is measured at its first call.
    """
    # A Sequential model keeps its graph as a Functional model of its own.
    graph = getattr(model, "_functional", None) or model
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is layer:
                return node
    raise DLCoverageError(
        f"layer {layer.name!r} is not called in the graph of model {model.name!r}; layers "
        "inside nested models cannot be measured on their own"
    )


def layer_output(model: Any, layer: Any) -> Any:
    """Returns the symbolic output of `layer` inside `model`'s graph."""
    return model_node(model, layer).output_tensors[0]


def _neurons(layer: Any, output: Any) -> int:
    shape = output.shape
    if len(shape) < 2 or shape[-1] is None:
        raise DLCoverageError(
            f"layer {layer.name!r} has output shape {tuple(shape)}; expected (batch, units) or "
            "(batch, ..., channels) with a known number of units or channels"
        )
    return int(shape[-1])


def resolve_layers(model: Any, names: Sequence[str] | None) -> list[Any]:
    """Returns the layers named `names` (default: `default_layers`), checking each exists."""
    if names is None:
        names = default_layers(model)
        if not names:
            raise DLCoverageError(
                f"model {model.name!r} has no post-activation layer to measure; name the "
                "layers to measure explicitly"
            )
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise DLCoverageError(
            f"expected at least one layer name for model {model.name!r}; received an empty "
            "list (pass None for the default layers)"
        )
    valid = [layer.name for layer in model.layers]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise DLCoverageError(
            f"unknown layer name(s) {unknown} for model {model.name!r}; valid names are {valid}"
        )
    if len(set(names)) != len(names):
        raise DLCoverageError(f"expected each layer named once; received {list(names)}")
    return [model.get_layer(n) for n in names]


class ActivationCapture:
    """Runs a model and returns its predictions with the measured neurons' values.

    Args:
        model: a built Keras 3 model with one input and one output.
        layers: names of the layers whose neurons form the layout; `None` for the
            default set (see module docstring).
        extra_layers: further layers to capture for a criterion's own use (IDC's
            subject layer), returned in `ActivationBatch.extra`.
    """

    def __init__(
        self,
        model: Any,
        layers: Sequence[str] | None = None,
        extra_layers: Sequence[str] = (),
    ) -> None:
        import keras
        import tensorflow as tf

        check_model(model)
        self.model = model
        measured = resolve_layers(model, layers)
        extra = resolve_layers(model, list(extra_layers)) if extra_layers else []
        outputs = {id(layer): layer_output(model, layer) for layer in measured + extra}
        self.layout = NeuronLayout(
            tuple(layer.name for layer in measured),
            tuple(_neurons(layer, outputs[id(layer)]) for layer in measured),
        )
        self.extra_names = tuple(layer.name for layer in extra)
        for layer in extra:
            _neurons(layer, outputs[id(layer)])

        def reduced(layer: Any) -> Any:
            # Channel mean over every axis but batch and channels: (b, h, w, c) -> (b, c).
            out = keras.ops.cast(outputs[id(layer)], "float32")
            axes = tuple(range(1, len(out.shape) - 1))
            return keras.ops.mean(out, axis=axes) if axes else out

        values = [reduced(layer) for layer in measured]
        joined = keras.ops.concatenate(values, axis=1) if len(values) > 1 else values[0]
        self._graph = keras.Model(
            model.inputs[0], [model.outputs[0], joined, *(reduced(layer) for layer in extra)]
        )
        self.input_shape = tuple(model.inputs[0].shape)
        self.input_dtype = model.inputs[0].dtype
        self.input_rank = len(self.input_shape)
        # A signature with a free batch axis: the short last batch reuses the same graph
        # instead of tracing a second one (tracing costs seconds on a ResNet).
        self._run = tf.function(
            lambda x: self._graph(x, training=False),
            input_signature=[tf.TensorSpec((None, *self.input_shape[1:]), self.input_dtype)],
        )

    def run(self, x: np.ndarray) -> tuple[np.ndarray, ActivationBatch]:
        """Returns the predictions and activations of one batch.

        Args:
            x: inputs of the model's input shape, `(batch, ...)`.

        Returns:
            Predictions as the model computes them, `(batch, ...)`, and the activations
            (`values` of shape `(batch, layout.size)`, float32).
        """
        x = validate_batch(np.asarray(x), self.input_shape, self.input_dtype)
        predictions, values, *extra = self._run(x)
        values = values.numpy()
        if not np.isfinite(values).all():
            self._raise_non_finite(values)
        batch = ActivationBatch(
            self.layout,
            values,
            {name: e.numpy() for name, e in zip(self.extra_names, extra, strict=True)},
        )
        return predictions.numpy(), batch

    def stream(
        self, x: Any, y: Any = None, *, batch_size: int = 128
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None, ActivationBatch]]:
        """Yields `(predictions, labels, activations)` for each batch of `x`.

        Args:
            x: a numpy array, an iterable of batches or a `tf.data.Dataset`.
            y: labels for an array `x`, or `None`.
            batch_size: inputs per forward pass.

        Raises:
            DLCoverageError: when `x` holds no input at all.
        """
        seen = 0
        for inputs, labels in iter_batches(x, y, batch_size=batch_size, input_rank=self.input_rank):
            if len(inputs) == 0:
                continue
            predictions, batch = self.run(inputs)
            seen += len(inputs)
            yield predictions, labels, batch
        if seen == 0:
            raise DLCoverageError(
                f"expected at least one input for model {self.model.name!r}; received none"
            )

    def _raise_non_finite(self, values: np.ndarray) -> None:
        bad_columns = np.flatnonzero(~np.isfinite(values).all(axis=0))
        layer = self.layout.names[
            int(np.searchsorted(self.layout.offsets, bad_columns[0], "right")) - 1
        ]
        raise DLCoverageError(
            f"layer {layer!r} of model {self.model.name!r} produced NaN or infinite activations "
            f"({len(bad_columns)} neurons affected); expected finite values"
        )
