"""Layer-wise relevance propagation (LRP) of a subject layer, for IDC.

IDC, importance-driven coverage (Gerasimou et al., "Importance-Driven Deep Learning
System Testing", ICSE 2020, the DeepImportance tool), ranks the neurons of a subject
layer by their relevance to the model's decision, computed with Layer-wise Relevance
Propagation (Bach et al., PLOS ONE 2015). Relevance starts as the logit (the
pre-softmax output) of the predicted class and flows down layer by layer by the z-rule

    R_i = sum_j  a_i w_ij / (z_j + eps sign(z_j))  R_j,   z_j = sum_i a_i w_ij + b_j,

with the bias in the denominator and eps = 1e-16, as in the released DeepImportance code.

For a network built only of piecewise-linear parts this rule has a closed form: the
relevance of every activation `a` equals `a * dL/da`, where `L` is the starting logit.
It holds at the top (R = z = z * 1) and is kept by each step down:

- a linear map (Dense, Conv, BatchNormalization in inference, average pooling, Add,
  Concatenate, reshaping): if R_j = z_j dL/dz_j, then
  R_i = a_i sum_j w_ij R_j / z_j = a_i sum_j w_ij dL/dz_j = a_i dL/da_i;
- ReLU and leaky ReLU pass relevance unchanged, and a = z (or a = alpha z, or a = 0
  with zero gradient), so a dL/da = z dL/dz;
- max pooling gives all relevance to the maximum, as the gradient does.

So a whole batch needs one forward and one backward pass (one `GradientTape` in one
`tf.function`), instead of the rule-by-rule propagation of one input at a time. The
closed form is the eps -> 0 limit of the rule; eps changes a result by a relative
eps / |z_j|, far below float32 resolution. Relevance is computed on the user's model
itself (inference mode), so predictions match the model exactly.

Other non-linearities (tanh, sigmoid, GELU, capped ReLU, ...) need their own
propagation rules and are refused between the subject layer and the logit with an
`UnsupportedLayerError`; layers below the subject layer are not restricted, since
relevance never flows through them.

Conventions: a neuron of a convolutional subject layer is a channel; its relevance is
summed over the spatial positions and its activation is the channel's spatial mean,
as everywhere else in pytest-dlcoverage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .capture import check_model, layer_output, model_node
from .errors import DLCoverageError, UnsupportedLayerError
from .inputs import validate_batch


def _producer(tensor: Any) -> Any:
    """Returns the layer that produced the symbolic Keras `tensor`."""
    return tensor._keras_history.operation


def _parents(tensor: Any) -> list[Any]:
    """Returns the symbolic tensors that the producer of `tensor` took as inputs."""
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return list(node.input_tensors)


def _activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "none"
    return getattr(activation, "__name__", type(activation).__name__)


def _layers_between(subject: Any, top: Any) -> list[Any] | None:
    """Returns the layers on some path from tensor `subject` up to tensor `top`.

    The layers are in topological order (closest to `subject` first), `subject`'s own
    producer excluded and `top`'s producer included. Returns `None` when `top` does
    not depend on `subject` at all.
    """
    # Iterative post-order walk down from `top`: a tensor lies on a path when one of
    # its inputs does. Recursion would overflow on deep networks.
    reaches: dict[int, bool] = {id(subject): True}
    on_path: list[Any] = []
    stack = [top]
    while stack:
        tensor = stack[-1]
        if id(tensor) in reaches:
            stack.pop()
            continue
        parents = _parents(tensor)
        pending = [p for p in parents if id(p) not in reaches]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        reaches[id(tensor)] = any(reaches[id(p)] for p in parents)
        if reaches[id(tensor)] and _producer(tensor) not in on_path:
            on_path.append(_producer(tensor))
    return on_path if reaches[id(top)] else None


def _is_piecewise_linear(layer: Any) -> bool:
    """Returns whether the z-rule equals activation times gradient through `layer`."""
    import keras

    layers = keras.layers
    linear_with_activation = (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D)
    structural = (
        layers.InputLayer,
        layers.BatchNormalization,
        layers.Add,
        layers.Concatenate,
        layers.Flatten,
        layers.Reshape,
        layers.Dropout,
        layers.Identity,
        layers.LeakyReLU,
        layers.ZeroPadding1D,
        layers.ZeroPadding2D,
        layers.ZeroPadding3D,
        layers.MaxPooling1D,
        layers.MaxPooling2D,
        layers.MaxPooling3D,
        layers.AveragePooling1D,
        layers.AveragePooling2D,
        layers.AveragePooling3D,
        layers.GlobalMaxPooling1D,
        layers.GlobalMaxPooling2D,
        layers.GlobalMaxPooling3D,
        layers.GlobalAveragePooling1D,
        layers.GlobalAveragePooling2D,
        layers.GlobalAveragePooling3D,
    )
    piecewise = (keras.activations.relu, keras.activations.leaky_relu, keras.activations.linear)
    # Exact types: a subclass may change `call` and break the closed form.
    kind = type(layer)
    if kind in structural:
        return True
    if kind in linear_with_activation or kind is layers.Activation:
        return layer.activation in piecewise
    if kind is layers.ReLU:
        # A cap (ReLU6) has zero gradient where relevance is not zero; a shifted
        # threshold makes the leaky part affine rather than linear.
        return layer.max_value is None and float(layer.threshold) == 0.0
    return False


class SubjectRelevance:
    """Batched z-rule relevance of a subject layer's neurons for the predicted class.

    The logit layer is the model's output layer or, when that is an `Activation` or
    `Softmax` layer, the layer feeding it; it must be a `Dense` layer with a linear or
    softmax activation. Its logits are computed as `inputs @ kernel + bias`, so a
    softmax fused into it is skipped without changing the model.

    Args:
        model: a built Keras 3 model with one input and one output.
        layer: name of the subject layer; `None` for the layer whose output is the
            logit layer's input (the input of the classifier head).

    Raises:
        DLCoverageError: `layer` is not a layer of the model, or does not feed the
            logit layer.
        UnsupportedLayerError: the logit layer is not a `Dense` layer, or a layer
            between the subject layer and the logit is not piecewise-linear.
    """

    def __init__(self, model: Any, layer: str | None = None) -> None:
        import keras
        import tensorflow as tf

        check_model(model)
        self.model = model
        self.logit_layer = self._find_logit_layer(model)
        head_input = model_node(model, self.logit_layer).input_tensors[0]
        if layer is None:
            subject = _producer(head_input)
        else:
            valid = [candidate.name for candidate in model.layers]
            if not isinstance(layer, str) or layer not in valid:
                raise DLCoverageError(
                    f"IDC subject layer must be a layer name of model {model.name!r}; "
                    f"received layer={layer!r}; valid names are {valid}"
                )
            subject = model.get_layer(layer)
        self.subject = subject
        self.subject_name: str = subject.name
        subject_output = layer_output(model, subject)

        between = _layers_between(subject_output, head_input)
        if between is None or subject is self.logit_layer:
            raise DLCoverageError(
                f"IDC subject layer {subject.name!r} does not feed the logit layer "
                f"{self.logit_layer.name!r}; expected a layer below the classifier head"
            )
        for candidate in between:
            if not _is_piecewise_linear(candidate):
                raise UnsupportedLayerError(
                    f"layer {candidate.name!r} ({type(candidate).__name__}, activation "
                    f"{_activation_name(candidate)}) lies between the IDC subject layer "
                    f"{subject.name!r} and the logit layer {self.logit_layer.name!r}; "
                    "z-rule relevance is exact only through piecewise-linear layers (Dense "
                    "or Conv with linear or relu activation, ReLU, LeakyReLU, pooling, "
                    "BatchNormalization, Add, Concatenate, Flatten, Reshape, Dropout, "
                    "ZeroPadding); choose a subject layer above it"
                )

        shape = tuple(subject_output.shape)
        if len(shape) < 2 or shape[-1] is None:
            raise DLCoverageError(
                f"IDC subject layer {subject.name!r} has output shape {shape}; expected "
                "(batch, units) or (batch, ..., channels) with a known number of channels"
            )
        self.neurons: int = int(shape[-1])
        self.is_conv: bool = len(shape) > 2
        self._spatial_axes = tuple(range(1, len(shape) - 1))
        self._shared = subject_output is head_input
        outputs = [subject_output] if self._shared else [subject_output, head_input]
        self._probe = keras.Model(model.inputs[0], outputs)
        self.input_shape = tuple(model.inputs[0].shape)
        self.input_dtype = model.inputs[0].dtype
        self._run = tf.function(
            self._compute,
            input_signature=[tf.TensorSpec((None, *self.input_shape[1:]), self.input_dtype)],
        )

    @staticmethod
    def _find_logit_layer(model: Any) -> Any:
        import keras

        output_layer = _producer(model.outputs[0])
        logit_layer = output_layer
        if type(output_layer) in (keras.layers.Activation, keras.layers.Softmax):
            if type(output_layer) is keras.layers.Activation and output_layer.activation not in (
                keras.activations.softmax,
                keras.activations.linear,
            ):
                raise UnsupportedLayerError(
                    f"output layer {output_layer.name!r} applies activation "
                    f"{_activation_name(output_layer)}; expected softmax or linear after the "
                    "logit layer"
                )
            logit_layer = _producer(model_node(model, output_layer).input_tensors[0])
        if type(logit_layer) is not keras.layers.Dense or logit_layer.activation not in (
            keras.activations.linear,
            keras.activations.softmax,
        ):
            raise UnsupportedLayerError(
                f"expected the logit layer {logit_layer.name!r} of model {model.name!r} to be "
                "a Dense layer with linear or softmax activation; received "
                f"{type(logit_layer).__name__} with activation {_activation_name(logit_layer)}"
            )
        return logit_layer

    def _compute(self, x: Any) -> tuple[Any, Any, Any, Any]:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = self._probe(x, training=False)
            # A model with a one-element output list returns the bare tensor.
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            subject = outputs[0]
            tape.watch(subject)
            head_input = tf.cast(subject if self._shared else outputs[1], tf.float32)
            logits = tf.matmul(head_input, tf.cast(self.logit_layer.kernel, tf.float32))
            if self.logit_layer.use_bias:
                logits = logits + tf.cast(self.logit_layer.bias, tf.float32)
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            chosen = tf.gather(logits, predicted, axis=1, batch_dims=1)
        gradient = tape.gradient(chosen, subject)
        activations = tf.cast(subject, tf.float32)
        relevance = activations * tf.cast(gradient, tf.float32)
        if self._spatial_axes:
            activations = tf.reduce_mean(activations, axis=self._spatial_axes)
            relevance = tf.reduce_sum(relevance, axis=self._spatial_axes)
        return predicted, logits, activations, relevance

    def batch(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns the prediction, logits, subject activations and relevance of a batch.

        Args:
            x: inputs of the model's input shape, `(batch_size, ...)`.

        Returns:
            `(predicted, logits, activations, relevance)`: the predicted class,
            `(batch_size,)` int64; the logits, `(batch_size, classes)` float32; the
            subject layer's neuron values, `(batch_size, neurons)` float32 (channel
            means for a conv layer); and each neuron's relevance for the predicted
            class, `(batch_size, neurons)` float32 (summed over a channel's positions).

        Raises:
            DLCoverageError: `x` has the wrong shape or non-finite values, or the model
                produced non-finite activations or relevance.
        """
        x = validate_batch(np.asarray(x), self.input_shape, self.input_dtype)
        predicted, logits, activations, relevance = (t.numpy() for t in self._run(x))
        for what, values in (("activations", activations), ("relevance", relevance)):
            if not np.isfinite(values).all():
                raise DLCoverageError(
                    f"IDC subject layer {self.subject_name!r} of model {self.model.name!r} "
                    f"produced NaN or infinite {what}; expected finite values"
                )
        return predicted.astype(np.int64), logits, activations, relevance
