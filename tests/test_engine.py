"""CoverageMeter on real Keras 3 models: the training profile against numpy statistics,
its cache and fingerprint, the errors a user can cause, all six criteria end to end on
real CIFAR-10 images, and the promise that the engine stays free of pytest and that
importing the plugin does not import TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from pytest_dlcoverage.engine import DEFAULT_CRITERIA, CoverageMeter  # noqa: E402
from pytest_dlcoverage.errors import DLCoverageError, ProfileCacheWarning  # noqa: E402
from pytest_dlcoverage.fingerprint import architecture, model_fingerprint  # noqa: E402
from pytest_dlcoverage.profile import TrainingProfile  # noqa: E402

layers = keras.layers
NEURON_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")
REPO = Path(__file__).parents[1]


def conv_model(name: str | None = "conv") -> keras.Model:
    """Returns a small CNN on `(8, 8, 3)` inputs with three classes; its default layers
    are `c1` (conv with relu), `r1` (ReLU after BatchNormalization) and `d1` (relu Dense).
    A `name` of `None` lets Keras number the model."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="r1")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(5, activation="relu", name="d1")(x)
    outputs = layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name=name)


def dense_model(seed: int = 12, name: str = "net", activation: str = "relu") -> keras.Model:
    """Returns a Sequential classifier of 6 features: Dense layers `d1` (5 units) and `d2`
    (4 units) with `activation`, softmax output of 3 classes; `seed` draws the weights."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(5, activation=activation, name="d1"),
            layers.Dense(4, activation=activation, name="d2"),
            layers.Dense(3, activation="softmax", name="out"),
        ],
        name=name,
    )


def meter_of(model: keras.Model, **kwargs) -> CoverageMeter:
    """Returns a quiet meter measuring the five neuron criteria unless told otherwise."""
    kwargs.setdefault("criteria", NEURON_CRITERIA)
    return CoverageMeter(model, progress=False, **kwargs)


def state_bytes(states) -> dict[str, bytes]:
    """Returns each criterion state serialised: equal bytes mean equal states."""
    return {name: state.to_bytes() for name, state in states.items()}


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return conv_model()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(13).normal(size=(150, 8, 8, 3)).astype("float32")


@pytest.fixture(scope="module")
def fitted(cnn, images) -> CoverageMeter:
    return meter_of(cnn, batch_size=32).fit(images)


@pytest.fixture(scope="module")
def dense() -> keras.Model:
    return dense_model()


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    return rng.normal(size=(120, 6)).astype("float32"), rng.integers(0, 3, 120)


# -- training profile ---------------------------------------------------------------------


def test_profile_ranges_equal_numpy_statistics_over_the_whole_training_set(cnn, images, fitted):
    names = ["c1", "r1", "d1"]
    assert list(fitted.layout.names) == names
    probe = keras.Model(cnn.inputs, [cnn.get_layer(n).output for n in names])
    maps = probe.predict(images, verbose=0)
    neurons = np.concatenate(
        [m.mean(axis=tuple(range(1, m.ndim - 1)), dtype=np.float64) for m in maps], axis=1
    )
    profile = fitted.profile_
    assert profile.ranges.count == len(images)
    np.testing.assert_allclose(profile.low, neurons.min(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(profile.high, neurons.max(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(profile.ranges.mean, neurons.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(profile.ranges.std, neurons.std(axis=0), rtol=1e-4, atol=1e-6)


def test_profile_does_not_depend_on_batch_size_or_input_form(cnn, images, fitted):
    dataset = tf.data.Dataset.from_tensor_slices(images)
    other = meter_of(cnn, batch_size=7).fit(dataset)
    assert other.profile_.ranges.count == fitted.profile_.ranges.count == len(images)
    # Equal up to float32 rounding: the model's own kernels may round differently for
    # different batch shapes (oneDNN picks its kernels by shape on some CPUs).
    for name in ("low", "high"):
        np.testing.assert_allclose(
            getattr(other.profile_, name), getattr(fitted.profile_, name), rtol=1e-6, atol=1e-7
        )
    for name in ("mean", "std"):
        np.testing.assert_allclose(
            getattr(other.profile_.ranges, name),
            getattr(fitted.profile_.ranges, name),
            rtol=1e-6,
            atol=1e-7,
        )


def test_fitting_again_on_other_data_replaces_the_profile(dense, features):
    x, _ = features
    meter = meter_of(dense).fit(x[:60])
    first = meter.profile_
    meter.fit(x[60:])
    assert meter.profile_.fingerprint != first.fingerprint
    assert meter.profile_.fingerprint == meter.fingerprint(x[60:])
    assert meter.profile_.ranges.count == 60
    fresh = meter_of(dense).fit(x[60:])
    np.testing.assert_array_equal(meter.profile_.high, fresh.profile_.high)


# -- observing ----------------------------------------------------------------------------


def test_observe_returns_the_predictions_of_model_predict(cnn, images, fitted):
    x = images[:45]
    predictions = fitted.observe(x, fitted.new_states(), batch_size=16)
    np.testing.assert_allclose(predictions, cnn.predict(x, verbose=0), rtol=1e-6, atol=1e-7)

    labels = np.arange(45) % 3
    predictions, seen = fitted.observe(x, fitted.new_states(), y=labels, with_labels=True)
    np.testing.assert_array_equal(seen, labels)
    assert fitted.observe(x, fitted.new_states(), with_labels=True)[1] is None


def test_observe_updates_several_state_sets_from_one_pass(fitted, images):
    first, second = fitted.new_states(), fitted.new_states()
    fitted.observe(images[:30], [first, second])
    alone = fitted.new_states()
    fitted.observe(images[:30], alone)
    assert state_bytes(first) == state_bytes(alone) == state_bytes(second)
    assert all(state.inputs == 30 for state in first.values())


def test_measure_equals_new_states_and_observe(fitted, images):
    states = fitted.new_states()
    fitted.observe(images[:50], states)
    assert fitted.measure(images[:50]) == {n: s.coverage() for n, s in states.items()}


def test_results_are_identical_across_input_forms_and_batch_sizes(fitted, images):
    x = images[:40]
    labels = np.arange(40) % 3
    forms = {
        "array": x,
        "list of batches": [x[:3], x[3:40]],
        "generator of pairs": ((x[a : a + 9], labels[a : a + 9]) for a in range(0, 40, 9)),
        "unbatched dataset": tf.data.Dataset.from_tensor_slices(x),
        "batched labelled dataset": tf.data.Dataset.from_tensor_slices((x, labels)).batch(6),
    }
    expected = fitted.new_states()
    fitted.observe(x, expected, batch_size=40)
    for form, data in forms.items():
        for batch_size in (5, 128):
            states = fitted.new_states()
            fitted.observe(data, states, batch_size=batch_size)
            assert state_bytes(states) == state_bytes(expected), (form, batch_size)
            if form.startswith("generator"):
                break  # a generator is read once


# -- cache and fingerprint ----------------------------------------------------------------


def refuse_to_build(*args, **kwargs):
    raise AssertionError("the training profile was rebuilt instead of loaded from the cache")


def test_a_cached_profile_is_saved_with_its_fingerprint_and_loaded_again(
    dense, features, tmp_path, monkeypatch
):
    x, _ = features
    built = meter_of(dense).fit(x, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    assert built.profile_.fingerprint[:20] in files[0].name
    assert TrainingProfile.load(files[0]).fingerprint == built.profile_.fingerprint

    monkeypatch.setattr(CoverageMeter, "_build_profile", refuse_to_build)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileCacheWarning)
        loaded = meter_of(dense).fit(x, cache_dir=tmp_path)
    assert loaded.profile_.fingerprint == built.profile_.fingerprint
    assert loaded.profile_.layout == built.profile_.layout
    for name in ("low", "high", "mean", "m2"):
        np.testing.assert_array_equal(
            getattr(loaded.profile_.ranges, name), getattr(built.profile_.ranges, name)
        )
    assert loaded.measure(x[:20]) == built.measure(x[:20])


def test_one_weight_one_pixel_one_label_or_one_setting_changes_the_fingerprint(dense, features):
    x, y = features
    base = meter_of(dense).fingerprint(x, y)
    assert meter_of(dense).fingerprint(x, y) == base
    # Parameters that do not shape the profile leave it reusable.
    assert meter_of(dense, params={"nc": {"threshold": 0.3}}).fingerprint(x, y) == base

    pixel = x.copy()
    pixel[17, 4] = np.nextafter(pixel[17, 4], np.float32(np.inf))
    label = y.copy()
    label[3] = (label[3] + 1) % 3
    assert meter_of(dense).fingerprint(pixel, y) != base
    assert meter_of(dense).fingerprint(x, label) != base
    assert meter_of(dense, layers=["d1"]).fingerprint(x, y) != base

    idc = meter_of(dense, criteria=DEFAULT_CRITERIA).fingerprint(x, y)
    assert idc != base
    assert meter_of(dense, criteria=DEFAULT_CRITERIA, seed=1).fingerprint(x, y) != idc
    other_m = meter_of(dense, criteria=DEFAULT_CRITERIA, params={"idc": {"m": 2}})
    assert other_m.fingerprint(x, y) != idc

    kernel = dense.get_layer("d2").kernel
    saved = kernel.numpy()
    changed = saved.copy()
    changed[2, 1] = np.nextafter(changed[2, 1], np.float32(np.inf))
    try:
        kernel.assign(changed)
        assert meter_of(dense).fingerprint(x, y) != base
    finally:
        kernel.assign(saved)
    assert meter_of(dense).fingerprint(x, y) == base


def fitted_in_one_cache(first, second, x, cache_dir):
    """Fits `first`, then `second`, into one cache folder and checks that they got two
    profiles, the second's equal to one built without the cache; returns both meters."""
    first_meter = meter_of(first).fit(x, cache_dir=cache_dir)
    second_meter = meter_of(second).fit(x, cache_dir=cache_dir)
    assert first_meter.profile_.fingerprint != second_meter.profile_.fingerprint
    assert len(list(cache_dir.iterdir())) == 2
    uncached = meter_of(second).fit(x)
    np.testing.assert_array_equal(second_meter.profile_.low, uncached.profile_.low)
    np.testing.assert_array_equal(second_meter.profile_.high, uncached.profile_.high)
    return first_meter, second_meter


def test_models_of_the_same_name_with_other_weights_never_share_a_profile(features, tmp_path):
    x, _ = features
    first, second = dense_model(seed=21, name="net"), dense_model(seed=22, name="net")
    first_meter, second_meter = fitted_in_one_cache(first, second, x, tmp_path)
    assert not np.array_equal(second_meter.profile_.high, first_meter.profile_.high)


def image_model(variant: str) -> keras.Model:
    """Returns a functional CNN on `(8, 8, 3)` inputs; each `variant` changes one setting
    or one connection of the "base" architecture and none of its weights' shapes."""
    option = {
        "relu": variant != "elu",
        "cap": 0.1 if variant == "cap" else None,
        "scale": 10.0 if variant == "scale" else 1.0,
        "strides": 2 if variant == "strides" else 1,
        "padding": "same" if variant == "padding" else "valid",
        "pool": 3 if variant == "pool" else 2,
    }
    # A named input: an unnamed one is numbered per build, which alone would tell them apart.
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Rescaling(option["scale"], name="scale")(inputs)
    x = layers.Conv2D(
        4,
        3,
        strides=option["strides"],
        padding=option["padding"],
        activation="relu" if option["relu"] else "elu",
        name="c1",
    )(x)
    x = layers.ReLU(max_value=option["cap"], name="r1")(x)
    x = layers.MaxPooling2D(option["pool"], name="pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    a = layers.Dense(4, activation="relu", name="a")(x)
    b = layers.Dense(4, activation="relu", name="b")(a if variant == "chain" else x)
    outputs = layers.Dense(3, activation="softmax", name="out")(layers.Add(name="add")([a, b]))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("variant", ["elu", "cap", "scale", "strides", "padding", "pool", "chain"])
def test_models_that_differ_only_in_architecture_never_share_a_fingerprint(variant):
    keras.utils.set_random_seed(31)
    base = image_model("base")
    other = image_model(variant)
    other.set_weights(base.get_weights())
    assert model_fingerprint(other) != model_fingerprint(base)


def test_a_model_differing_only_in_activation_does_not_load_the_others_cached_profile(
    features, tmp_path
):
    x, _ = features
    relu = dense_model(seed=23, activation="relu")
    elu = dense_model(seed=23, activation="elu")
    for mine, theirs in zip(relu.weights, elu.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    relu_meter, elu_meter = fitted_in_one_cache(relu, elu, x, tmp_path)
    assert elu_meter.profile_.low.min() < 0 <= relu_meter.profile_.low.min()


def test_the_same_model_built_again_or_in_another_process_has_the_same_fingerprint():
    # Keras numbers the unnamed model and its input in order of creation: conv_model(None)
    # is named differently on each build here, and differently again in a fresh process.
    first, second = conv_model(name=None), conv_model(name=None)
    assert first.name != second.name
    assert model_fingerprint(second) == model_fingerprint(first)
    description = architecture(first)
    assert first.name not in description
    assert " at 0x" not in description
    printed = run_python(
        "import sys; sys.path.insert(0, 'tests')\n"
        "from test_engine import conv_model\n"
        "from pytest_dlcoverage.fingerprint import model_fingerprint\n"
        "print(model_fingerprint(conv_model(name=None)))\n"
    )
    assert printed.splitlines()[-1] == model_fingerprint(first)


def test_the_clustering_rules_of_idc_are_part_of_the_fingerprint(dense, features, monkeypatch):
    from pytest_dlcoverage import importance

    x, y = features
    base = meter_of(dense, criteria=DEFAULT_CRITERIA).fingerprint(x, y)
    changes = {
        "SILHOUETTE_SAMPLE_SIZE": 1000,
        "KMEANS_INITS": 3,
        "CLUSTER_COUNTS": (2, 3),
        "MIN_VALUES_TO_CLUSTER": 20,
    }
    for constant, value in changes.items():
        with monkeypatch.context() as patch:
            patch.setattr(importance, constant, value)
            changed = meter_of(dense, criteria=DEFAULT_CRITERIA).fingerprint(x, y)
        assert changed != base, constant
    assert meter_of(dense, criteria=DEFAULT_CRITERIA).fingerprint(x, y) == base
    # Without IDC the clustering shapes nothing.
    without_idc = meter_of(dense).fingerprint(x, y)
    monkeypatch.setattr(importance, "KMEANS_INITS", 3)
    assert meter_of(dense).fingerprint(x, y) == without_idc


def test_labels_beside_a_dataset_are_an_error_not_dropped(dense, features):
    x, y = features
    meter = meter_of(dense, criteria=DEFAULT_CRITERIA, params={"idc": {"m": 2}})
    with pytest.raises(DLCoverageError, match=r"inside it, as \(inputs, labels\) elements"):
        meter.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), y)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(dense, features, tmp_path, damage):
    x, _ = features
    built = meter_of(dense).fit(x, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    content = path.read_bytes()
    damaged = {
        "garbage": b"\x00garbage, not a profile\xff" * 10,
        "truncated": content[: len(content) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)

    with pytest.warns(ProfileCacheWarning, match="rebuilding"):
        rebuilt = meter_of(dense).fit(x, cache_dir=tmp_path)
    assert rebuilt.profile_.fingerprint == built.profile_.fingerprint
    np.testing.assert_array_equal(rebuilt.profile_.low, built.profile_.low)
    assert TrainingProfile.load(path).fingerprint == built.profile_.fingerprint


def test_a_stale_cache_file_is_rebuilt_with_a_warning(dense, features, tmp_path):
    x, _ = features
    meter_of(dense).fit(x[:60], cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    other_dir = tmp_path / "other"
    meter_of(dense).fit(x[60:], cache_dir=other_dir)
    (other,) = other_dir.iterdir()
    # A valid profile of other data, stored under this data's name.
    path.write_bytes(other.read_bytes())

    with pytest.warns(ProfileCacheWarning, match="does not match"):
        rebuilt = meter_of(dense).fit(x[:60], cache_dir=tmp_path)
    assert rebuilt.profile_.fingerprint == rebuilt.fingerprint(x[:60])
    fresh = meter_of(dense).fit(x[:60])
    np.testing.assert_array_equal(rebuilt.profile_.high, fresh.profile_.high)
    assert TrainingProfile.load(path).fingerprint == rebuilt.profile_.fingerprint


# -- errors a user can cause ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            np.zeros((4, 8, 8, 1), "float32"),
            r"shape \(batch, 8, 8, 3\).*received shape \(4, 8, 8, 1\)",
        ),
        (np.zeros((4, 192), "float32"), r"shape \(batch, 8, 8, 3\).*received shape \(4, 192\)"),
        (np.full((4, 8, 8, 3), "a"), r"expected numeric inputs; received .* dtype <U1"),
        (np.zeros((4, 8, 8, 3), object), "expected numeric inputs; received .* dtype object"),
        (np.zeros((0, 8, 8, 3), "float32"), "expected at least one input .*received none"),
        ([], "expected at least one input .*received none"),
    ],
    ids=["channels", "rank", "strings", "objects", "empty array", "empty list"],
)
def test_bad_inputs_are_clear_errors(fitted, bad, message):
    with pytest.raises(DLCoverageError, match=message):
        fitted.observe(bad, fitted.new_states())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_errors(fitted, images, value):
    x = images[:10].copy()
    x[3, 2, 2, 1] = value
    with pytest.raises(DLCoverageError, match="expected finite inputs; received 1 NaN or infinite"):
        fitted.observe(x, fitted.new_states())
    with pytest.raises(DLCoverageError, match="expected finite inputs"):
        meter_of(fitted.model).fit(x)


def test_an_empty_dataset_is_an_error(fitted):
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 3), "float32"))
    with pytest.raises(DLCoverageError, match="received none"):
        fitted.observe(empty, fitted.new_states())
    with pytest.raises(DLCoverageError, match="received none"):
        meter_of(fitted.model).fit(empty)


def test_infinite_weights_are_an_error_naming_the_layer(features):
    x, _ = features
    model = dense_model()
    meter = meter_of(model).fit(x)
    kernel = model.get_layer("d2").kernel
    kernel.assign(np.full(kernel.shape, np.inf, "float32"))
    with pytest.raises(DLCoverageError, match="layer 'd2' .*NaN or infinite activations"):
        meter.observe(x, meter.new_states())
    with pytest.raises(DLCoverageError, match="layer 'd2' .*NaN or infinite activations"):
        meter_of(model).fit(x)


def test_an_activation_producing_infinity_is_an_error_naming_the_layer():
    model = keras.Sequential(
        [
            keras.Input((2,)),
            layers.Dense(3, activation="relu", name="d1"),
            layers.Activation(lambda t: keras.ops.exp(t * 1000.0 + 100.0), name="explode"),
            layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    with pytest.raises(DLCoverageError, match="layer 'explode' .*NaN or infinite activations"):
        meter_of(model).fit(np.ones((5, 2), "float32"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"criteria": ["nc", "lsc"]},
            r"expected criteria among \[.*'idc'.*\]; received \['nc', 'lsc'\]",
        ),
        ({"criteria": []}, "expected criteria among"),
        ({"layers": ["d1", "nope"]}, r"unknown layer name\(s\) \['nope'\].*valid names are \["),
        (
            {"params": {"kmnc": {"k": 10}}},
            r"not measured: \['kmnc'\]; measured criteria are \['nc'\]",
        ),
        ({"params": {"nc": {"k": 10}}}, "nc"),
        ({"batch_size": 0}, "positive integer batch_size; received 0"),
    ],
    ids=["unknown criterion", "no criterion", "unknown layer", "unmeasured", "bad param", "batch"],
)
def test_bad_settings_are_clear_errors(dense, kwargs, message):
    kwargs.setdefault("criteria", ["nc"])
    with pytest.raises(DLCoverageError, match=message):
        CoverageMeter(dense, **kwargs)


def test_an_unknown_layer_error_lists_every_valid_name(dense):
    with pytest.raises(DLCoverageError) as error:
        meter_of(dense, layers=["nope"])
    for layer in dense.layers:
        assert repr(layer.name) in str(error.value)


@pytest.mark.parametrize(
    "model",
    [lambda x: x, "sklearn"],
    ids=["function", "sklearn estimator"],
)
def test_a_model_that_is_not_a_keras_model_is_an_error(model):
    if model == "sklearn":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression()
        received = "sklearn.linear_model._logistic.LogisticRegression"
    else:
        received = "function"
    with pytest.raises(DLCoverageError, match=f"expected a Keras 3 model .*received .*{received}"):
        CoverageMeter(model)


def test_a_sequential_model_without_inputs_is_an_error():
    model = keras.Sequential([layers.Dense(3, activation="relu"), layers.Dense(2)])
    with pytest.raises(DLCoverageError, match="no defined inputs; give it a keras.Input"):
        CoverageMeter(model)


def test_idc_without_labels_is_an_error(dense, features):
    x, _ = features
    meter = meter_of(dense, criteria=DEFAULT_CRITERIA, params={"idc": {"m": 2}})
    with pytest.raises(DLCoverageError, match="IDC needs training labels.*received y=None"):
        meter.fit(x)
    with pytest.raises(DLCoverageError, match="batch 0 has no labels"):
        meter.fit(tf.data.Dataset.from_tensor_slices(x))


def test_training_data_that_can_be_read_only_once_is_an_error(dense, features):
    x, _ = features
    with pytest.raises(DLCoverageError, match="read more than once.*one-shot iterator"):
        meter_of(dense).fit(batch for batch in (x[:60], x[60:]))


def test_using_a_meter_before_fit_is_an_error(dense, features):
    x, _ = features
    meter = meter_of(dense)
    for use in (meter.new_states, lambda: meter.measure(x), lambda: meter.observe(x, {})):
        with pytest.raises(DLCoverageError, match=r"no training profile yet; call fit"):
            use()


# -- end to end on real CIFAR-10 images ----------------------------------------------------


def residual_cifar_cnn() -> keras.Model:
    """Returns a small residual CNN for CIFAR-10: a conv stem, one residual block of two
    convs with BatchNormalization and an identity shortcut, global pooling and a softmax
    classifier of 10 classes."""
    keras.utils.set_random_seed(31)
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    shortcut = layers.ReLU(name="stem_relu")(x)
    x = layers.Conv2D(8, 3, padding="same", name="block_conv1")(shortcut)
    x = layers.BatchNormalization(name="block_bn1")(x)
    x = layers.ReLU(name="block_relu1")(x)
    x = layers.Conv2D(8, 3, padding="same", name="block_conv2")(x)
    x = layers.BatchNormalization(name="block_bn2")(x)
    x = layers.Add(name="block_add")([shortcut, x])
    x = layers.ReLU(name="block_relu2")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="tiny_resnet")


@pytest.fixture(scope="module")
def cifar_meter(cifar10_small, tmp_path_factory):
    data = cifar10_small
    model = residual_cifar_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=50, verbose=0)
    cache = tmp_path_factory.mktemp("profiles")
    meter = CoverageMeter(model, batch_size=64, progress=False)
    meter.fit(data.x_train, data.y_train, cache_dir=cache)
    return meter, cache


def test_all_six_criteria_on_a_residual_cnn_and_real_cifar10(cifar10_small, cifar_meter):
    meter, _ = cifar_meter
    x = cifar10_small.x_test
    assert meter.criteria == DEFAULT_CRITERIA
    assert list(meter.layout.names) == ["stem_relu", "block_relu1", "block_relu2"]
    assert meter.profile_.importance.subject_layer == "pool"

    whole = meter.new_states()
    predictions = meter.observe(x, whole)
    np.testing.assert_allclose(predictions, meter.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    for name, state in whole.items():
        coverage = state.coverage()
        assert coverage.total > 0 and 0 < coverage.covered <= coverage.total, name
        assert state.inputs == len(x)

    # Two halves merged equal the whole, for every criterion.
    first, second = meter.new_states(), meter.new_states()
    meter.observe(x[:100], first)
    meter.observe(x[100:], second)
    for name in DEFAULT_CRITERIA:
        first[name].merge(second[name])
    assert state_bytes(first) == state_bytes(whole)

    # The order and batching of the inputs do not matter.
    order = np.random.default_rng(32).permutation(len(x))
    shuffled = meter.new_states()
    meter.observe(x[order], shuffled, batch_size=23)
    assert state_bytes(shuffled) == state_bytes(whole)

    assert meter.measure(x) == {name: state.coverage() for name, state in whole.items()}


def test_a_cached_idc_profile_gives_the_same_coverage(cifar10_small, cifar_meter, monkeypatch):
    meter, cache = cifar_meter
    data = cifar10_small
    monkeypatch.setattr(CoverageMeter, "_build_profile", refuse_to_build)
    loaded = CoverageMeter(meter.model, batch_size=64, progress=False)
    loaded.fit(data.x_train, data.y_train, cache_dir=cache)
    importance, original = loaded.profile_.importance, meter.profile_.importance
    np.testing.assert_array_equal(importance.important, original.important)
    assert importance.cluster_counts == original.cluster_counts
    assert loaded.measure(data.x_test[:80]) == meter.measure(data.x_test[:80])


# -- import hygiene -------------------------------------------------------------------------


def run_python(code: str) -> str:
    """Runs `code` in a fresh interpreter and returns what it printed."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_package_and_the_plugin_does_not_import_tensorflow():
    printed = run_python(
        "import sys\n"
        "import pytest_dlcoverage, pytest_dlcoverage.plugin\n"
        "pytest_dlcoverage.__version__\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    assert printed == "[]"


def test_the_engine_never_imports_pytest():
    printed = run_python(
        "import importlib, pkgutil, sys\n"
        "import pytest_dlcoverage\n"
        "names = [m.name for m in pkgutil.walk_packages(pytest_dlcoverage.__path__,\n"
        "         'pytest_dlcoverage.') if m.name != 'pytest_dlcoverage.plugin']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in ('pytest', '_pytest') if m in sys.modules))\n"
    )
    count, loaded = printed.split(" ", 1)
    assert int(count) >= 10
    assert loaded == "[]"


# -- models loaded from files -------------------------------------------------------------


def test_a_sequential_model_loaded_from_a_keras_file_measures_like_the_original(
    dense, features, tmp_path
):
    # A loaded Sequential model calls its layers twice (rebuild and graph); every criterion,
    # IDC included, must read the layers' values inside the model's own graph.
    x, _ = features
    y = dense.predict(x, verbose=0).argmax(axis=1)
    dense.save(tmp_path / "net.keras")
    loaded = keras.models.load_model(tmp_path / "net.keras")

    results = []
    for model in (dense, loaded):
        meter = CoverageMeter(model, params={"idc": {"m": 3}}, progress=False).fit(x, y)
        states = meter.new_states()
        meter.observe(x[:40], states)
        results.append({name: state.coverage() for name, state in states.items()})

    assert set(results[0]) == set(DEFAULT_CRITERIA)
    assert results[0] == results[1]


# -- more bad input -------------------------------------------------------------------------


def test_an_empty_layer_list_is_an_error_not_the_default(dense):
    with pytest.raises(DLCoverageError, match="at least one layer name.*received an empty"):
        meter_of(dense, layers=[])


def test_a_kmnc_k_too_large_to_hold_is_refused_before_any_allocation(dense, features):
    meter = meter_of(dense, criteria=("kmnc",), params={"kmnc": {"k": 10**12}}).fit(features[0])
    with pytest.raises(DLCoverageError, match=r"kmnc: 9 neurons with 1000000000000 cells"):
        meter.new_states()


def test_batches_of_named_inputs_are_refused_clearly(fitted, images):
    dataset = tf.data.Dataset.from_tensor_slices({"image": images}).batch(10)
    with pytest.raises(DLCoverageError, match=r"received a dict with keys \['image'\]"):
        fitted.observe(dataset, fitted.new_states())
    with pytest.raises(DLCoverageError, match="received a dict"):
        fitted.observe([{"image": images[:10]}], fitted.new_states())


def test_an_unwritable_cache_folder_warns_and_still_gives_the_profile(dense, features, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(ProfileCacheWarning, match="cannot write the training profile cache"):
        meter = meter_of(dense).fit(features[0], cache_dir=blocked / "cache")
    reference = meter_of(dense).fit(features[0])
    np.testing.assert_array_equal(meter.profile_.high, reference.profile_.high)
