"""Tests of the batched z-rule relevance (`pytest_dlcoverage.relevance`).

The reference is an explicit layer-by-layer Layer-wise Relevance Propagation with the
z-rule (Bach et al. 2015), written here in numpy (float64): each layer's relevance is
split among its inputs in proportion to their contributions a_i w_ij, divided by the
layer's output z_j including the bias, stabilised by 1e-16 with the sign of z_j. It
starts from the logit of the predicted class. The module under test uses the closed
form activation x gradient instead, so agreement checks that identity and the
implementation together.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from pytest_dlcoverage.errors import DLCoverageError, UnsupportedLayerError
from pytest_dlcoverage.relevance import SubjectRelevance

EPS = 1e-16
L = keras.layers


# -- a model builder that records the graph for the reference ----------------------------


class Graph:
    """Builds a Keras functional model and records each layer with the names of its
    inputs, so that the numpy reference walks the same graph without Keras internals."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.input = keras.Input(shape, name="x")
        self.tensors = {"x": self.input}
        self.nodes: list[tuple[str, keras.layers.Layer, tuple[str, ...]]] = []

    def __call__(self, layer: keras.layers.Layer, *inputs: str) -> str:
        args = [self.tensors[name] for name in inputs]
        self.tensors[layer.name] = layer(args if len(args) > 1 else args[0])
        self.nodes.append((layer.name, layer, inputs))
        return layer.name

    def model(self) -> keras.Model:
        return keras.Model(self.input, self.tensors[self.nodes[-1][0]])


def randomise(model: keras.Model, seed: int) -> None:
    """Gives every layer random weights: non-zero biases and BatchNormalization moving
    statistics far from the identity, so that every term of the z-rule matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, variance = weights
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0.0, 0.3, beta.shape),
                    rng.normal(0.0, 0.5, mean.shape),
                    rng.uniform(0.3, 2.0, variance.shape),
                ]
            )
        else:
            kernel, bias = weights
            fan_in = int(np.prod(kernel.shape[:-1]))
            layer.set_weights(
                [
                    rng.normal(0.0, 1.5 / np.sqrt(fan_in), kernel.shape),
                    rng.normal(0, 0.2, bias.shape),
                ]
            )


# -- the numpy reference -----------------------------------------------------------------


def stabilise(z: np.ndarray) -> np.ndarray:
    return z + EPS * np.where(z >= 0, 1.0, -1.0)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_geometry(layer, x):
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    kh, kw = kernel.shape[:2]
    s = layer.strides[0]
    if layer.padding == "same":
        (t, b), (lft, r) = same_padding(x.shape[1], kh, s), same_padding(x.shape[2], kw, s)
        xp = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)))
    else:
        t = lft = 0
        xp = x
    oh, ow = (xp.shape[1] - kh) // s + 1, (xp.shape[2] - kw) // s + 1
    return kernel, bias, s, xp, oh, ow, t, lft


def conv_forward(layer, x):
    kernel, bias, s, xp, oh, ow, _, _ = conv_geometry(layer, x)
    z = np.zeros((len(x), oh, ow, kernel.shape[-1])) + bias
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            z += xp[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s] @ kernel[i, j]
    return z


def conv_relevance(layer, x, z, relevance):
    # z-rule: R_in = a * sum_j w_ij R_j / z_j, accumulated over every kernel offset.
    kernel, _, s, xp, oh, ow, t, lft = conv_geometry(layer, x)
    share = relevance / stabilise(z)
    back = np.zeros_like(xp)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            back[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s] += (
                share @ kernel[i, j].T
            )
    return x * back[:, t : t + x.shape[1], lft : lft + x.shape[2]]


def windows(x, p):
    b, h, w, c = x.shape
    return x[:, : h // p * p, : w // p * p].reshape(b, h // p, p, w // p, p, c)


def pool_relevance(x, weights, z, relevance, p):
    # Pooling is a linear map with weights `weights` over each window (1/p^2 for the
    # average, an indicator of the maximum for max pooling).
    spread = (relevance / stabilise(z))[:, :, None, :, None, :]
    result = np.zeros_like(x)
    b, h, w, c = x.shape
    result[:, : h // p * p, : w // p * p] = (windows(x, p) * weights * spread).reshape(
        b, h // p * p, w // p * p, c
    )
    return result


def activation(fn, z):
    if fn is keras.activations.relu:
        return np.maximum(z, 0.0)
    assert fn in (keras.activations.linear, keras.activations.softmax)
    return z  # softmax only ever ends the network, where the logit is wanted


def forward(graph: Graph, x: np.ndarray) -> tuple[dict, dict]:
    """Returns each layer's output and, for weighted layers, its pre-activation z."""
    out = {"x": x.astype(np.float64)}
    pre = {}
    for name, layer, inputs in graph.nodes:
        a = [out[i] for i in inputs]
        if isinstance(layer, L.Dense):
            kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
            pre[name] = a[0] @ kernel + bias
            out[name] = activation(layer.activation, pre[name])
        elif isinstance(layer, L.Conv2D):
            pre[name] = conv_forward(layer, a[0])
            out[name] = activation(layer.activation, pre[name])
        elif isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, variance = (w.astype(np.float64) for w in layer.get_weights())
            scale = gamma / np.sqrt(variance + layer.epsilon)
            out[name] = a[0] * scale + (beta - mean * scale)
        elif isinstance(layer, L.ReLU):
            out[name] = np.maximum(a[0], 0.0)
        elif isinstance(layer, L.Add):
            out[name] = sum(a)
        elif isinstance(layer, L.MaxPooling2D):
            out[name] = windows(a[0], layer.pool_size[0]).max(axis=(2, 4))
        elif isinstance(layer, L.AveragePooling2D):
            out[name] = windows(a[0], layer.pool_size[0]).mean(axis=(2, 4))
        elif isinstance(layer, L.GlobalAveragePooling2D):
            out[name] = a[0].mean(axis=(1, 2))
        elif isinstance(layer, L.Flatten):
            out[name] = a[0].reshape(len(a[0]), -1)
        else:
            raise AssertionError(f"reference has no rule for {layer}")
    return out, pre


def reference_relevance(graph: Graph, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """Returns the z-rule relevance of every layer's output and the predicted classes."""
    out, pre = forward(graph, x)
    last = graph.nodes[-1][0]
    logits = pre[last]
    predicted = logits.argmax(axis=1)
    relevance = {name: np.zeros_like(value) for name, value in out.items()}
    start = np.zeros_like(logits)
    start[np.arange(len(x)), predicted] = logits[np.arange(len(x)), predicted]
    relevance[last] = start
    for name, layer, inputs in reversed(graph.nodes):
        r = relevance[name]
        a = [out[i] for i in inputs]
        if isinstance(layer, L.Dense):
            # ReLU passes relevance unchanged, so the output's relevance is z's.
            kernel = layer.get_weights()[0].astype(np.float64)
            shares = [a[0] * ((r / stabilise(pre[name])) @ kernel.T)]
        elif isinstance(layer, L.Conv2D):
            shares = [conv_relevance(layer, a[0], pre[name], r)]
        elif isinstance(layer, L.BatchNormalization):
            gamma, _, _, variance = (w.astype(np.float64) for w in layer.get_weights())
            scale = gamma / np.sqrt(variance + layer.epsilon)
            shares = [a[0] * scale * r / stabilise(out[name])]
        elif isinstance(layer, L.ReLU):
            shares = [r]
        elif isinstance(layer, L.Add):
            shares = [ai * r / stabilise(out[name]) for ai in a]
        elif isinstance(layer, L.MaxPooling2D):
            p = layer.pool_size[0]
            grouped = windows(a[0], p)
            mask = grouped == grouped.max(axis=(2, 4), keepdims=True)
            weights = mask / mask.sum(axis=(2, 4), keepdims=True)
            shares = [pool_relevance(a[0], weights, out[name], r, p)]
        elif isinstance(layer, L.AveragePooling2D):
            p = layer.pool_size[0]
            shares = [pool_relevance(a[0], 1.0 / p**2, out[name], r, p)]
        elif isinstance(layer, L.GlobalAveragePooling2D):
            n = a[0].shape[1] * a[0].shape[2]
            shares = [a[0] / n * (r / stabilise(out[name]))[:, None, None, :]]
        elif isinstance(layer, L.Flatten):
            shares = [r.reshape(a[0].shape)]
        for i, share in zip(inputs, shares, strict=True):
            relevance[i] = relevance[i] + share
    return relevance, predicted


def per_neuron(values: np.ndarray, reduce) -> np.ndarray:
    return reduce(values, axis=(1, 2)) if values.ndim == 4 else values


def assert_matches_reference(graph: Graph, model: keras.Model, x: np.ndarray, layers) -> None:
    expected, predicted = reference_relevance(graph, x)
    out, _ = forward(graph, x)
    for name in layers:
        subject = SubjectRelevance(model, layer=name)
        got_class, _, activations, relevance = subject.batch(x)
        np.testing.assert_array_equal(got_class, predicted)
        want = per_neuron(expected[name], np.sum)
        assert relevance.shape == want.shape == (len(x), subject.neurons)
        scale = np.abs(want).max()
        assert scale > 0, f"reference relevance of {name} is all zero; the test is vacuous"
        np.testing.assert_allclose(relevance, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
        np.testing.assert_allclose(
            activations, per_neuron(out[name], np.mean), rtol=1e-4, atol=1e-5, err_msg=name
        )


# -- models ------------------------------------------------------------------------------


def dense_graph(seed: int = 0) -> tuple[Graph, keras.Model]:
    g = Graph((10,))
    h = g(L.Dense(12, activation="relu", name="d1"), "x")
    h = g(L.Dense(9, name="d2"), h)
    h = g(L.BatchNormalization(name="bn"), h)
    h = g(L.ReLU(name="r"), h)
    h = g(L.Dense(6, activation="relu", name="d3"), h)
    g(L.Dense(4, name="logits"), h)
    model = g.model()
    randomise(model, seed)
    return g, model


def residual_graph(seed: int = 0, head: str = "softmax") -> tuple[Graph, keras.Model]:
    g = Graph((8, 8, 3))
    h = g(L.Conv2D(4, 3, padding="same", name="c1"), "x")
    h = g(L.BatchNormalization(name="bn1"), h)
    r1 = g(L.ReLU(name="r1"), h)
    h = g(L.Conv2D(4, 3, padding="same", activation="relu", name="c2"), r1)
    h = g(L.Add(name="add"), r1, h)
    h = g(L.MaxPooling2D(2, name="mp"), h)
    h = g(L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c3"), h)
    h = g(L.AveragePooling2D(2, name="ap"), h)
    h = g(L.Flatten(name="fl"), h)
    h = g(L.Dense(8, activation="relu", name="d"), h)
    g(L.Dense(5, activation=head, name="logits"), h)
    model = g.model()
    randomise(model, seed)
    return g, model


# -- tests -------------------------------------------------------------------------------


def test_dense_network_matches_layer_by_layer_z_rule():
    graph, model = dense_graph()
    x = np.random.default_rng(1).normal(size=(32, 10)).astype(np.float32)
    assert_matches_reference(graph, model, x, ["d1", "d2", "bn", "r", "d3"])


def test_residual_conv_network_matches_layer_by_layer_z_rule():
    graph, model = residual_graph()
    x = np.random.default_rng(2).normal(size=(24, 8, 8, 3)).astype(np.float32)
    assert_matches_reference(
        graph, model, x, ["c1", "bn1", "r1", "c2", "add", "mp", "c3", "fl", "d"]
    )


def test_global_average_pooling_head_matches_reference():
    g = Graph((6, 6, 2))
    h = g(L.Conv2D(5, 3, activation="relu", name="c"), "x")
    h = g(L.GlobalAveragePooling2D(name="gap"), h)
    g(L.Dense(3, name="logits"), h)
    model = g.model()
    randomise(model, 3)
    x = np.random.default_rng(3).normal(size=(16, 6, 6, 2)).astype(np.float32)
    assert_matches_reference(g, model, x, ["c", "gap"])


def test_default_subject_is_classifier_head_input_and_predictions_match_model():
    _, model = residual_graph()
    x = np.random.default_rng(4).normal(size=(40, 8, 8, 3)).astype(np.float32)
    subject = SubjectRelevance(model)
    predicted, logits, _, _ = subject.batch(x)
    assert subject.subject_name == "d" and subject.neurons == 8 and not subject.is_conv
    np.testing.assert_array_equal(predicted, model.predict(x, verbose=0).argmax(axis=1))
    assert logits.shape == (40, 5)


def test_batches_do_not_interact():
    _, model = residual_graph()
    x = np.random.default_rng(5).normal(size=(20, 8, 8, 3)).astype(np.float32)
    subject = SubjectRelevance(model, layer="add")
    whole = subject.batch(x)[3]
    parts = np.concatenate([subject.batch(x[:7])[3], subject.batch(x[7:])[3]])
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-7)


def test_conv_subject_relevance_is_summed_per_channel():
    graph, model = residual_graph()
    x = np.random.default_rng(6).normal(size=(8, 8, 8, 3)).astype(np.float32)
    subject = SubjectRelevance(model, layer="r1")
    _, _, activations, relevance = subject.batch(x)
    assert subject.is_conv and subject.neurons == 4
    assert relevance.shape == activations.shape == (8, 4)
    maps, _ = reference_relevance(graph, x)
    assert maps["r1"].shape == (8, 8, 8, 4)
    np.testing.assert_allclose(
        relevance, maps["r1"].sum(axis=(1, 2)), rtol=1e-4, atol=1e-5 * np.abs(maps["r1"]).max()
    )


@pytest.mark.parametrize("head", ["fused", "separate", "linear"])
def test_softmax_is_skipped_and_relevance_starts_from_the_logit(head):
    # The same weights (same seed) with the softmax fused into the last Dense, as a
    # separate layer, or absent: relevance starts from the pre-softmax logit in all three.
    graph, model = residual_graph(seed=7, head="softmax" if head == "fused" else "linear")
    if head == "separate":
        model = keras.Model(model.inputs, L.Activation("softmax")(model.outputs[0]))
    x = np.random.default_rng(8).normal(size=(16, 8, 8, 3)).astype(np.float32)
    subject = SubjectRelevance(model)
    assert subject.subject_name == "d"
    _, logits, activations, relevance = subject.batch(x)

    kernel, bias = model.get_layer("logits").get_weights()
    np.testing.assert_allclose(logits, activations @ kernel + bias, rtol=1e-5, atol=1e-5)
    expected, _ = reference_relevance(graph, x)
    np.testing.assert_allclose(
        relevance, expected["d"], rtol=1e-4, atol=1e-5 * np.abs(expected["d"]).max()
    )


def test_tanh_above_the_subject_layer_is_refused_by_name():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            L.Dense(8, activation="relu", name="subject"),
            L.Dense(8, activation="tanh", name="squash"),
            L.Dense(3, activation="softmax", name="logits"),
        ]
    )
    with pytest.raises(UnsupportedLayerError, match=r"'squash' \(Dense, activation tanh\)"):
        SubjectRelevance(model, layer="subject")
    # Below the subject layer the tanh is harmless: relevance never flows through it.
    assert SubjectRelevance(model).subject_name == "squash"


@pytest.mark.parametrize(
    "layer",
    [L.Activation("sigmoid", name="odd"), L.ReLU(max_value=6.0, name="odd")],
    ids=["sigmoid", "relu6"],
)
def test_other_non_piecewise_linear_layers_are_refused(layer):
    model = keras.Sequential(
        [keras.Input((5,)), L.Dense(8, name="subject"), layer, L.Dense(3, name="logits")]
    )
    with pytest.raises(UnsupportedLayerError, match="'odd'"):
        SubjectRelevance(model, layer="subject")


def test_unknown_subject_layer_lists_valid_names():
    _, model = dense_graph()
    with pytest.raises(DLCoverageError, match=r"received layer='nope'.*'d1'.*'d3'"):
        SubjectRelevance(model, layer="nope")


def test_subject_above_the_logit_input_is_refused():
    _, model = dense_graph()
    with pytest.raises(DLCoverageError, match="does not feed the logit layer"):
        SubjectRelevance(model, layer="logits")


def test_non_dense_logit_layer_is_refused():
    inputs = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 3, name="c")(inputs)
    model = keras.Model(inputs, L.GlobalAveragePooling2D(name="gap")(h))
    with pytest.raises(UnsupportedLayerError, match="'gap'"):
        SubjectRelevance(model)


def test_sequential_model_without_input_layer_object_works():
    model = keras.Sequential([L.Dense(6, activation="relu", name="h"), L.Dense(3, name="o")])
    model.build((None, 4))
    x = np.random.default_rng(9).normal(size=(5, 4)).astype(np.float32)
    subject = SubjectRelevance(model)
    _, _, activations, relevance = subject.batch(x)
    kernel = model.get_layer("o").get_weights()[0]
    logits = model.predict(x, verbose=0)
    predicted = logits.argmax(axis=1)
    # One linear step: relevance of the head input is a_i w_ic (bias left in the logit).
    np.testing.assert_allclose(relevance, activations * kernel[:, predicted].T, rtol=1e-5)


def test_non_finite_inputs_are_refused():
    _, model = dense_graph()
    x = np.zeros((3, 10), dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(DLCoverageError, match="finite"):
        SubjectRelevance(model).batch(x)
