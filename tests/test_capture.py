"""Activation capture on real Keras 3 models: which layers are measured by default, the
channel-mean values of conv neurons against an independent numpy reduction of the full
feature maps, predictions against `model.predict`, models reloaded from `.keras`
files, and the input forms that all give the same stream of batches."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from pytest_dlcoverage.capture import ActivationCapture, default_layers  # noqa: E402
from pytest_dlcoverage.errors import DLCoverageError  # noqa: E402
from pytest_dlcoverage.inputs import iter_batches  # noqa: E402

layers = keras.layers

# The post-activation outputs of `residual_model`, in model order: a ReLU layer, a conv
# layer with a fused relu, an Activation("relu") after the Add, and a tanh Dense layer.
# Left out: the linear conv, BatchNormalization, Add, pooling, the linear Dense, the
# linear Activation and the softmax output.
RESIDUAL_DEFAULT = ["relu1", "conv2", "act", "dense_tanh"]


def residual_model() -> keras.Model:
    """Returns a small functional residual CNN, input `(8, 8, 3)`, three classes, whose
    BatchNormalization has moving statistics far from the identity, so that running it
    in training mode instead of inference mode would change every value after it."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    shortcut = layers.ReLU(name="relu1")(x)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(shortcut)
    x = layers.Add(name="add")([shortcut, x])
    x = layers.Activation("relu", name="act")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(6, name="dense_linear")(x)
    x = layers.Activation("linear", name="identity")(x)
    x = layers.Dense(5, activation="tanh", name="dense_tanh")(x)
    outputs = layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs, name="residual")

    bn = model.get_layer("bn1")
    rng = np.random.default_rng(2)
    bn.gamma.assign(rng.uniform(0.5, 2.0, 4).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.5, 4).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 1.0, 4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, 4).astype("float32"))
    return model


def dense_model() -> keras.Model:
    """Returns a small Sequential classifier of 6 features: two relu Dense layers of 5
    and 4 units and a softmax output of 3 classes."""
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(5, activation="relu", name="d1"),
            layers.Dense(4, activation="relu", name="d2"),
            layers.Dense(3, activation="softmax", name="out"),
        ],
        name="dense",
    )


def reference_neurons(model: keras.Model, names: list[str], x: np.ndarray) -> np.ndarray:
    """Returns the neuron values of layers `names` computed independently of the
    capture: full feature maps from a separate probe model, each conv channel reduced
    to its spatial mean in numpy (float64). Shape `(len(x), neurons)`."""
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    maps = probe.predict(x, verbose=0)
    maps = maps if isinstance(maps, list) else [maps]
    columns = [m.mean(axis=tuple(range(1, m.ndim - 1)), dtype=np.float64) for m in maps]
    return np.concatenate(columns, axis=1)


def captured(capture: ActivationCapture, x, y=None, batch_size: int = 128):
    """Returns the concatenated predictions, labels (or None) and neuron values of a
    whole stream."""
    predictions, labels, values = [], [], []
    for p, lab, batch in capture.stream(x, y, batch_size=batch_size):
        predictions.append(p)
        values.append(batch.values)
        if lab is not None:
            labels.append(lab)
    return (
        np.concatenate(predictions),
        np.concatenate(labels) if labels else None,
        np.concatenate(values),
    )


@pytest.fixture(scope="module")
def residual():
    return residual_model()


@pytest.fixture(scope="module")
def residual_capture(residual):
    return ActivationCapture(residual)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(4).normal(size=(203, 8, 8, 3)).astype("float32")


# -- default layers ----------------------------------------------------------------------


def test_default_layers_are_post_activation_outputs_without_the_output_layer(residual):
    assert default_layers(residual) == RESIDUAL_DEFAULT
    assert default_layers(dense_model()) == ["d1", "d2"]


def test_default_layout_counts_dense_units_and_conv_channels(residual_capture):
    layout = residual_capture.layout
    assert list(layout.names) == RESIDUAL_DEFAULT
    assert layout.sizes == (4, 4, 4, 5)


def test_a_model_without_post_activation_layers_needs_named_layers():
    model = keras.Sequential(
        [keras.Input((4,)), layers.Dense(3, name="logits"), layers.Softmax(name="probs")]
    )
    with pytest.raises(DLCoverageError, match="no post-activation layer"):
        ActivationCapture(model)
    assert ActivationCapture(model, ["logits"]).layout.sizes == (3,)


def test_unknown_layer_name_is_an_error_listing_the_valid_names(residual):
    with pytest.raises(DLCoverageError) as error:
        ActivationCapture(residual, ["relu1", "no_such_layer"])
    message = str(error.value)
    assert "no_such_layer" in message
    for layer in residual.layers:
        assert repr(layer.name) in message


def test_a_layer_named_twice_is_an_error(residual):
    with pytest.raises(DLCoverageError, match="each layer named once"):
        ActivationCapture(residual, ["relu1", "relu1"])


# -- values --------------------------------------------------------------------------------


def test_conv_neurons_are_channel_means_of_the_full_feature_maps(
    residual, residual_capture, images
):
    _, _, values = captured(residual_capture, images, batch_size=64)
    expected = reference_neurons(residual, RESIDUAL_DEFAULT, images)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


def test_named_layers_include_batch_normalization_in_inference_mode(residual, images):
    names = ["bn1", "add", "dense_linear", "out"]
    capture = ActivationCapture(residual, names)
    assert capture.layout.sizes == (4, 4, 6, 3)
    _, _, values = captured(capture, images)
    expected = reference_neurons(residual, names, images)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)

    # The check has teeth: training-mode BatchNormalization gives other values.
    training = keras.Model(residual.inputs, residual.get_layer("bn1").output)(images, training=True)
    training_means = np.asarray(training).mean(axis=(1, 2))
    assert not np.allclose(values[:, :4], training_means, atol=1e-3)


def test_dense_neurons_of_a_sequential_model(images):
    model = dense_model()
    x = np.random.default_rng(5).normal(size=(50, 6)).astype("float32")
    capture = ActivationCapture(model)
    predictions, _, values = captured(capture, x, batch_size=16)
    np.testing.assert_allclose(values, reference_neurons(model, ["d1", "d2"], x), rtol=1e-6)
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_predictions_equal_model_predict(residual, residual_capture, images):
    predictions, _, _ = captured(residual_capture, images, batch_size=50)
    np.testing.assert_allclose(
        predictions, residual.predict(images, verbose=0), rtol=1e-6, atol=1e-7
    )


def test_activations_are_float32_of_shape_batch_by_neurons(residual_capture, images):
    _, batch = residual_capture.run(images[:7])
    assert batch.values.dtype == np.float32
    assert batch.values.shape == (7, residual_capture.layout.size)


def test_extra_layers_travel_beside_the_layout(residual, images):
    capture = ActivationCapture(residual, ["relu1"], extra_layers=["gap"])
    _, batch = capture.run(images[:10])
    assert list(batch.layout.names) == ["relu1"]
    np.testing.assert_allclose(
        batch.extra["gap"], reference_neurons(residual, ["gap"], images[:10]), rtol=1e-5
    )


@pytest.mark.parametrize("build", [residual_model, dense_model], ids=["functional", "sequential"])
def test_a_model_loaded_from_a_keras_file_gives_the_same_layout_and_values(build, tmp_path):
    model = build()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    shape = (40, *model.inputs[0].shape[1:])
    x = np.random.default_rng(6).normal(size=shape).astype("float32")

    original, reloaded = ActivationCapture(model), ActivationCapture(loaded)
    assert reloaded.layout == original.layout
    p_orig, _, v_orig = captured(original, x)
    p_load, _, v_load = captured(reloaded, x)
    np.testing.assert_allclose(v_load, v_orig, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p_load, p_orig, rtol=1e-6, atol=1e-7)


# -- input forms -------------------------------------------------------------------------


def input_forms(x: np.ndarray, y: np.ndarray) -> dict[str, tuple]:
    """Returns the same inputs and labels in every accepted form, as `(x, y)` arguments
    of `stream`; uneven, oversized and tiny batches included."""
    cuts = [0, 1, 30, 45, len(x)]
    pieces = [(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return {
        "array": (x, y),
        "float64 array": (x.astype(np.float64), y),
        "list of arrays": ([p[0] for p in pieces], None),
        "list of pairs": (pieces, None),
        "generator of pairs": ((p for p in pieces), None),
        "unbatched dataset": (tf.data.Dataset.from_tensor_slices(x), None),
        "unbatched labelled dataset": (tf.data.Dataset.from_tensor_slices((x, y)), None),
        "batched dataset": (tf.data.Dataset.from_tensor_slices(x).batch(17), None),
        "batched labelled dataset": (tf.data.Dataset.from_tensor_slices((x, y)).batch(33), None),
    }


def assert_float32_equal(actual: np.ndarray, desired: np.ndarray, where: str) -> None:
    """Float32 results agree to a few units in the last place (2**-23 is about 1.2e-7)."""
    assert actual.shape == desired.shape, where
    np.testing.assert_allclose(actual, desired, rtol=1e-6, atol=1e-6, err_msg=where)


def test_every_input_form_and_batch_size_gives_the_same_results(residual_capture, images):
    images = images[:61]
    labels = np.arange(len(images)) % 3
    reference, _, reference_values = captured(residual_capture, images, batch_size=61)
    for batch_size in (4, 16, 1000):
        for form, (x, y) in input_forms(images, labels).items():
            predictions, seen_labels, values = captured(
                residual_capture, x, y, batch_size=batch_size
            )
            where = f"{form}, batch_size={batch_size}"
            # Equal up to float32 rounding: the model's own kernels may round differently
            # for different batch shapes (oneDNN picks its kernels by shape on some CPUs).
            assert_float32_equal(values, reference_values, where)
            assert_float32_equal(predictions, reference, where)
            if y is not None or "pairs" in form or "labelled" in form:
                np.testing.assert_array_equal(seen_labels, labels, err_msg=where)
            else:
                assert seen_labels is None, where


def test_inputs_are_streamed_in_batches_of_at_most_batch_size(residual_capture, images):
    # A list whose single batch is larger than batch_size must still be split.
    sizes = [len(x) for x, _ in iter_batches([images], batch_size=64, input_rank=4)]
    assert sizes == [64, 64, 64, 11]
    sizes = [
        len(x)
        for x, _ in iter_batches(
            tf.data.Dataset.from_tensor_slices(images), batch_size=50, input_rank=4
        )
    ]
    assert sizes == [50, 50, 50, 50, 3]
    assert [len(b) for _, _, b in residual_capture.stream(images[:5], batch_size=2)] == [2, 2, 1]


def test_labels_of_a_different_length_are_an_error(residual_capture, images):
    with pytest.raises(DLCoverageError, match="203 inputs and 5 labels"):
        list(residual_capture.stream(images, np.zeros(5)))


@pytest.mark.parametrize("batched", [False, True])
def test_separate_labels_for_a_dataset_are_an_error_not_dropped(images, batched):
    dataset = tf.data.Dataset.from_tensor_slices(images[:5])
    if batched:
        dataset = dataset.batch(2)
    message = (
        r"labels of a tf.data.Dataset inside it.*received a separate y, ndarray of shape \(5,\)"
    )
    with pytest.raises(DLCoverageError, match=message):
        list(iter_batches(dataset, np.arange(5), input_rank=4))
