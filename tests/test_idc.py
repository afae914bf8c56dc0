"""Tests of IDC, importance-driven coverage: the importance profile (important neurons and
their clusters, `pytest_dlcoverage.importance`) and the criterion
(`pytest_dlcoverage.criteria.idc`)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from pytest_dlcoverage.criteria.base import Criterion
from pytest_dlcoverage.criteria.idc import ImportanceDrivenCoverage
from pytest_dlcoverage.errors import ClusteringWarning, DLCoverageError, IncompatibleStateError
from pytest_dlcoverage.importance import ImportanceProfile, cluster_values
from pytest_dlcoverage.layout import ActivationBatch, NeuronLayout
from pytest_dlcoverage.profile import RangeStats, TrainingProfile
from pytest_dlcoverage.relevance import SubjectRelevance

L = keras.layers


# -- helpers -----------------------------------------------------------------------------


def hand_profile(
    centroids: list[list[float]], important: list[int], neurons: int, layer: str = "dense"
) -> TrainingProfile:
    """Returns a training profile whose importance profile is set by hand."""
    importance = ImportanceProfile(
        subject_layer=layer,
        m=len(important),
        seed=0,
        relevance=np.zeros(neurons),
        important=important,
        centroids=centroids,
        inputs_used=100,
    )
    layout = NeuronLayout((layer,), (neurons,))
    return TrainingProfile(f"hand-{neurons}", layout, RangeStats.empty(neurons), importance)


def batch_of(profile: TrainingProfile, values: np.ndarray) -> ActivationBatch:
    return ActivationBatch(profile.layout, np.asarray(values, dtype=np.float32))


def idc_for(profile: TrainingProfile, *batches: np.ndarray) -> ImportanceDrivenCoverage:
    state = ImportanceDrivenCoverage(profile.layout, profile, m=profile.importance.m)
    for values in batches:
        state.update(batch_of(profile, values))
    return state


def nearest_combinations(selected: np.ndarray, centroids: list[np.ndarray]) -> set[tuple]:
    """Independent count: the set of tuples of nearest-centroid indices, one per input."""
    return {
        tuple(int(np.argmin(np.abs(np.asarray(c) - row[j]))) for j, c in enumerate(centroids))
        for row in selected
    }


# -- IDC by hand -------------------------------------------------------------------------

# Important neurons 3 (centroids 0, 1) and 1 (centroids -1, 0, 2): 2 x 3 = 6 combinations.
HAND_CENTROIDS = [[0.0, 1.0], [-1.0, 0.0, 2.0]]
HAND_VALUES = np.array(
    [
        # n0    n1    n2    n3         neuron 3 -> cluster, neuron 1 -> cluster
        [9.0, 1.5, 9.0, 0.2],  # 0.2 -> 0;  1.5 -> 2 (|1.5-2| < |1.5-0|)    (0, 2)
        [9.0, -0.8, 9.0, 0.9],  # 0.9 -> 1; -0.8 -> 0                        (1, 0)
        [9.0, 1.1, 9.0, -5.0],  # -5 -> 0;  1.1 -> 2                         (0, 2) again
        [9.0, 0.4, 9.0, 0.6],  # 0.6 -> 1;  0.4 -> 1                         (1, 1)
    ]
)


def test_hand_computed_idc():
    profile = hand_profile(HAND_CENTROIDS, important=[3, 1], neurons=4)
    state = idc_for(profile, HAND_VALUES)
    coverage = state.coverage()
    assert (coverage.covered, coverage.total) == (3, 6)
    assert state.max_reachable() == 4
    assert state.cluster_counts == (2, 3)
    # Mixed radix, first important neuron most significant: (a, b) -> 3a + b.
    assert state.codes_.tolist() == [0 * 3 + 2, 1 * 3 + 0, 1 * 3 + 1]


def test_equal_distance_goes_to_the_lower_centroid():
    profile = hand_profile([[0.0, 1.0]], important=[0], neurons=1)
    state = idc_for(profile, [[0.5]])
    assert state.codes_.tolist() == [0]


def test_subject_layer_is_read_from_extra_activations():
    # The subject layer is not a measured layer: the engine passes it in `extra`.
    profile = hand_profile(HAND_CENTROIDS, important=[3, 1], neurons=4)
    layout = NeuronLayout(("other",), (2,))
    profile = TrainingProfile("hand-extra", layout, RangeStats.empty(2), profile.importance)
    state = ImportanceDrivenCoverage(layout, profile, m=2)
    state.update(ActivationBatch(layout, np.zeros((4, 2), np.float32), {"dense": HAND_VALUES}))
    assert state.coverage().covered == 3

    with pytest.raises(DLCoverageError, match="subject layer 'dense'"):
        state.update(ActivationBatch(layout, np.zeros((4, 2), np.float32)))


def test_non_finite_subject_activations_are_refused():
    profile = hand_profile(HAND_CENTROIDS, important=[3, 1], neurons=4)
    values = HAND_VALUES.copy()
    values[2, 1] = np.nan
    with pytest.raises(DLCoverageError, match="finite"):
        idc_for(profile, values)


# -- union properties and serialisation ----------------------------------------------------


def random_case(seed: int = 0, inputs: int = 300):
    rng = np.random.default_rng(seed)
    centroids = [[-1.0, 0.0, 1.0], [0.0, 2.0], [-2.0, -1.0, 1.0, 3.0], [0.5, 1.5, 2.5]]
    profile = hand_profile(centroids, important=[5, 0, 2, 4], neurons=6)
    values = rng.normal(0.0, 1.5, size=(inputs, 6))
    return profile, values


def test_random_case_matches_independent_count():
    profile, values = random_case()
    state = idc_for(profile, values)
    expected = nearest_combinations(values[:, [5, 0, 2, 4]], profile.importance.centroids)
    assert state.coverage().covered == len(expected)
    assert state.coverage().total == 3 * 2 * 4 * 3


def test_merge_equals_whole_and_order_does_not_matter():
    profile, values = random_case(seed=1)
    whole = idc_for(profile, values)

    first, second = idc_for(profile, values[:110]), idc_for(profile, values[110:])
    first.merge(second)
    np.testing.assert_array_equal(first.codes_, whole.codes_)
    assert first.inputs == whole.inputs == len(values)

    order = np.random.default_rng(2).permutation(len(values))
    shuffled = idc_for(profile, *np.array_split(values[order], 7))
    np.testing.assert_array_equal(shuffled.codes_, whole.codes_)

    # Adding inputs never lowers coverage.
    assert idc_for(profile, values[:50]).coverage().covered <= whole.coverage().covered


def test_serialisation_round_trip_with_and_without_profile():
    profile, values = random_case(seed=3)
    state = idc_for(profile, values)

    loaded = Criterion.from_bytes(state.to_bytes(), profile)
    assert isinstance(loaded, ImportanceDrivenCoverage)
    np.testing.assert_array_equal(loaded.codes_, state.codes_)
    assert loaded.coverage() == state.coverage() and loaded.inputs == state.inputs

    # Without the profile, a state can still be reported and merged.
    bare = Criterion.from_bytes(state.to_bytes())
    assert bare.coverage() == state.coverage()
    more = idc_for(profile, np.random.default_rng(4).normal(0.0, 3.0, size=(100, 6)))
    bare.merge(more)
    union = idc_for(profile, values)
    union.merge(more)
    assert bare.coverage() == union.coverage()

    empty = Criterion.from_bytes(ImportanceDrivenCoverage(profile.layout, profile, m=4).to_bytes())
    assert empty.coverage().covered == 0


def test_combinations_beyond_int64_are_counted_exactly():
    # 70 important neurons with two clusters each: 2**70 combinations, more than int64.
    neurons = 70
    profile = hand_profile([[0.0, 1.0]] * neurons, important=list(range(neurons)), neurons=neurons)
    values = (np.random.default_rng(5).random((60, neurons)) < 0.5).astype(float)
    values = np.concatenate([values, values[:10]])  # ten repeated inputs
    state = idc_for(profile, values[:35], values[35:])
    coverage = state.coverage()
    assert coverage.total == 2**neurons
    assert coverage.covered == len({tuple(row) for row in values.astype(int)}) == 60
    assert state.codes_.dtype == object

    loaded = Criterion.from_bytes(state.to_bytes())
    assert loaded.coverage() == coverage
    assert sorted(loaded.codes_.tolist()) == sorted(state.codes_.tolist())
    # The code of a row is its bits read as a binary number, first neuron most significant.
    first = values[0].astype(int)
    assert int("".join(map(str, first)), 2) in set(state.codes_.tolist())


@pytest.mark.parametrize(
    "codes, message",
    [
        ([1, 1, 4], r"distinct codes in increasing order; received 3 codes, 1 of them"),
        ([4, 2], r"distinct codes in increasing order; received 2 codes, 1 of them"),
        ([0, 6], r"codes in \[0, 6\) for clusters \(2, 3\); received the code 6"),
    ],
)
def test_a_loaded_state_with_repeated_unsorted_or_impossible_codes_is_refused(codes, message):
    profile = hand_profile(HAND_CENTROIDS, important=[3, 1], neurons=4)
    state = idc_for(profile)
    state.codes_ = np.array(codes, dtype=np.int64)
    data = state.to_bytes()
    for loaded_with in (profile, None):
        with pytest.raises(DLCoverageError, match=message):
            Criterion.from_bytes(data, loaded_with)


def test_a_loaded_state_beyond_int64_with_bad_codes_is_refused():
    neurons = 70
    profile = hand_profile([[0.0, 1.0]] * neurons, important=list(range(neurons)), neurons=neurons)
    state = idc_for(profile)
    for codes, message in (([5, 5], "increasing order"), ([1, 2**70], "received the code")):
        state.codes_ = np.array(codes, dtype=object)
        with pytest.raises(DLCoverageError, match=message):
            Criterion.from_bytes(state.to_bytes())


def test_per_layer_is_not_defined():
    profile, _ = random_case()
    with pytest.raises(NotImplementedError):
        idc_for(profile).per_layer()


def test_states_of_different_profiles_do_not_merge():
    profile, values = random_case()
    other = hand_profile([[0.0, 1.0]] * 4, important=[5, 0, 2, 4], neurons=6)
    other.fingerprint = "another"
    with pytest.raises(IncompatibleStateError):
        idc_for(profile, values).merge(idc_for(other, values))


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        ({"m": 0}, "m must be a positive integer"),
        ({"m": True}, "m must be a positive integer"),
        ({"m": 2.5}, "m must be a positive integer"),
        ({"layer": 3}, "layer must be a layer name or None"),
        ({"k": 3}, "unknown"),
    ],
)
def test_invalid_parameters(params, message):
    with pytest.raises(DLCoverageError, match=message):
        ImportanceDrivenCoverage.validate_params(**params)


def test_defaults():
    assert ImportanceDrivenCoverage.validate_params() == {"m": 6, "layer": None}


def test_profile_must_match_parameters():
    profile, _ = random_case()
    with pytest.raises(DLCoverageError, match="m=4"):
        ImportanceDrivenCoverage(profile.layout, profile, m=5)
    with pytest.raises(DLCoverageError, match="subject layer 'dense'"):
        ImportanceDrivenCoverage(profile.layout, profile, m=4, layer="other")
    assert (
        ImportanceDrivenCoverage(profile.layout, profile, m=4, layer="dense").coverage().covered
        == 0
    )

    no_importance = TrainingProfile("x", profile.layout, profile.ranges, None)
    with pytest.raises(DLCoverageError, match="no importance profile"):
        ImportanceDrivenCoverage(profile.layout, no_importance, m=4)


def test_hand_profile_is_validated():
    with pytest.raises(DLCoverageError, match="strictly increasing"):
        hand_profile([[1.0, 0.0]], important=[0], neurons=2)
    with pytest.raises(DLCoverageError, match="distinct important"):
        hand_profile([[0.0], [1.0]], important=[1, 1], neurons=2)


# -- clustering ----------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_silhouette_picks_the_obvious_number_of_clusters(groups):
    rng = np.random.default_rng(groups)
    samples = [rng.normal(5.0 * g, 0.1, size=40) for g in range(groups)]
    centroids = cluster_values(np.concatenate(samples), seed=0)
    # Well separated groups: k-means with the right k finds exactly the group means.
    np.testing.assert_allclose(centroids, [s.mean() for s in samples], rtol=1e-9)


def test_silhouette_sample_keeps_the_obvious_choice_on_many_values():
    rng = np.random.default_rng(7)
    samples = [rng.normal(c, 0.2, size=3000) for c in (-4.0, 0.0, 4.0)]  # 9,000 values
    centroids = cluster_values(np.concatenate(samples), seed=0)
    np.testing.assert_allclose(centroids, [s.mean() for s in samples], rtol=1e-6)


def test_dense_rule_drops_exact_zeros_before_clustering():
    rng = np.random.default_rng(8)
    ones, threes = rng.normal(1.0, 0.05, 20), rng.normal(3.0, 0.05, 20)
    values = np.concatenate([np.zeros(60), ones, threes])
    np.testing.assert_allclose(
        cluster_values(values, drop_zeros=True), [ones.mean(), threes.mean()], rtol=1e-9
    )
    # Kept, the zeros form a cluster of their own.
    np.testing.assert_allclose(
        cluster_values(values, drop_zeros=False), [0.0, ones.mean(), threes.mean()], atol=1e-9
    )


def test_dense_rule_gives_centroid_zero_below_ten_values():
    values = np.concatenate([np.zeros(100), np.arange(1.0, 10.0)])  # 9 non-zero values
    with pytest.warns(ClusteringWarning, match="9 non-zero"):
        assert cluster_values(values, drop_zeros=True).tolist() == [0.0]
    ten = np.concatenate([np.zeros(100), [1.0] * 5 + [9.0] * 5])
    np.testing.assert_allclose(cluster_values(ten, drop_zeros=True), [1.0, 9.0])


def test_too_few_distinct_values():
    with pytest.warns(ClusteringWarning, match="single value"):
        assert cluster_values(np.full(20, 2.5)).tolist() == [2.5]
    # Two distinct values: k = 3 and 4 are skipped, k = 2 finds both.
    np.testing.assert_allclose(cluster_values(np.array([1.0] * 7 + [4.0] * 8)), [1.0, 4.0])


def test_same_seed_gives_identical_centroids():
    values = np.random.default_rng(9).uniform(0.0, 1.0, size=500)  # no obvious clusters
    first, second = cluster_values(values, seed=11), cluster_values(values, seed=11)
    np.testing.assert_array_equal(first, second)


# -- building the importance profile -----------------------------------------------------


@pytest.fixture(scope="module")
def small_classifier():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)  # three classes
    model = keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(10, activation="relu", name="hidden"),
            L.Dense(8, activation="relu", name="penultimate"),
            L.Dense(3, activation="softmax", name="logits"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    return model, x, y


def batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_build_uses_correct_inputs_and_top_relevance(small_classifier):
    model, x, y = small_classifier
    profile = ImportanceProfile.build(model, batches(x, y, 50), m=3, seed=0)

    predicted = model.predict(x, verbose=0).argmax(axis=1)
    correct = predicted == y
    assert 10 <= correct.sum() < len(x)  # some inputs are misclassified and left out
    assert profile.inputs_used == int(correct.sum())
    assert profile.subject_layer == "penultimate" and not profile.conv

    _, _, activations, relevance = SubjectRelevance(model).batch(x)
    np.testing.assert_allclose(profile.relevance, relevance[correct].sum(axis=0), rtol=1e-5)
    expected_top = sorted(range(8), key=lambda j: (-profile.relevance[j], j))[:3]
    assert profile.important.tolist() == expected_top

    # Centroids are the clusters of the very activations the criterion will read.
    # Up to float32 rounding: the model may round differently for another batch shape.
    for j, centroids in zip(profile.important, profile.centroids, strict=True):
        np.testing.assert_allclose(
            centroids,
            cluster_values(activations[correct, j], seed=0, drop_zeros=True),
            rtol=1e-6,
        )


def test_build_does_not_depend_on_batching_or_label_encoding(small_classifier):
    model, x, y = small_classifier
    sparse = ImportanceProfile.build(model, batches(x, y, 50), m=3, seed=4)
    one_hot = ImportanceProfile.build(model, batches(x, np.eye(3)[y], 17), m=3, seed=4)
    assert one_hot.important.tolist() == sparse.important.tolist()
    np.testing.assert_allclose(one_hot.relevance, sparse.relevance, rtol=1e-5)
    for a, b in zip(one_hot.centroids, sparse.centroids, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6)  # float32 rounding may depend on batch shape


def test_build_is_deterministic_for_a_seed(small_classifier):
    model, x, y = small_classifier
    runs = [ImportanceProfile.build(model, batches(x, y, 64), m=4, seed=21) for _ in range(2)]
    for a, b in zip(runs[0].centroids, runs[1].centroids, strict=True):
        np.testing.assert_array_equal(a, b)


def test_build_reports_progress(small_classifier):
    model, x, y = small_classifier
    done = []
    ImportanceProfile.build(model, batches(x, y, 100), m=1, progress=done.append)
    assert done == [100, 100, 40]


def test_build_errors(small_classifier):
    model, x, y = small_classifier
    with pytest.raises(DLCoverageError, match="at most the 8 neurons.*received m=9"):
        ImportanceProfile.build(model, batches(x, y, 50), m=9)
    with pytest.raises(DLCoverageError, match="m must be a positive integer"):
        ImportanceProfile.build(model, batches(x, y, 50), m=0)

    predicted = model.predict(x, verbose=0).argmax(axis=1)
    mostly_wrong = (predicted + 1) % 3
    mostly_wrong[:4] = predicted[:4]  # four correct inputs
    with pytest.raises(DLCoverageError, match="at least 10 correctly.*received 4 correct of 240"):
        ImportanceProfile.build(model, batches(x, mostly_wrong, 50), m=2)

    with pytest.raises(
        DLCoverageError, match=r"one-hot labels of shape \(n, 3\).*and shape \(50, 7\)"
    ):
        ImportanceProfile.build(model, batches(x, np.zeros((240, 7)), 50), m=2)
    with pytest.raises(DLCoverageError, match=r"one label per input.*labels of shape \(3,\)"):
        ImportanceProfile.build(model, [(x[:50], y[:3])], m=2)
    with pytest.raises(DLCoverageError, match="no labels"):
        ImportanceProfile.build(model, [(x, None)], m=2)
    with pytest.raises(DLCoverageError, match=r"integers in \[0, 3\).*240 of 240 outside"):
        ImportanceProfile.build(model, [(x, y + 0.5)], m=2)
    bad = x.copy()
    bad[3, 2] = np.inf
    with pytest.raises(DLCoverageError, match="finite"):
        ImportanceProfile.build(model, [(bad, y)], m=2)


def test_importance_round_trips_through_the_training_profile_file(small_classifier, tmp_path):
    model, x, y = small_classifier
    importance = ImportanceProfile.build(model, batches(x, y, 80), m=3, seed=2)
    meta, arrays = importance.to_arrays()
    again = ImportanceProfile.from_arrays(meta, arrays)

    layout = NeuronLayout(("hidden",), (10,))
    TrainingProfile("fp", layout, RangeStats.empty(10), importance).save(tmp_path / "p.npz")
    loaded = TrainingProfile.load(tmp_path / "p.npz").importance
    for copy in (again, loaded):
        assert (copy.subject_layer, copy.m, copy.seed, copy.inputs_used, copy.conv) == (
            "penultimate",
            3,
            2,
            importance.inputs_used,
            False,
        )
        np.testing.assert_array_equal(copy.relevance, importance.relevance)
        np.testing.assert_array_equal(copy.important, importance.important)
        for a, b in zip(copy.centroids, importance.centroids, strict=True):
            np.testing.assert_array_equal(a, b)


# -- end to end on real images ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_resnet(cifar10_small):
    """A tiny residual CNN trained for two epochs on 300 real CIFAR-10 images."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    h = L.BatchNormalization(name="stem_bn")(h)
    h = L.ReLU(name="stem_relu")(h)
    y = L.Conv2D(8, 3, padding="same", name="block_conv1")(h)
    y = L.BatchNormalization(name="block_bn1")(y)
    y = L.ReLU(name="block_relu1")(y)
    y = L.Conv2D(8, 3, padding="same", name="block_conv2")(y)
    y = L.BatchNormalization(name="block_bn2")(y)
    h = L.Add(name="block_add")([h, y])
    h = L.ReLU(name="block_out")(h)
    h = L.GlobalAveragePooling2D(name="pool")(h)
    outputs = L.Dense(10, activation="softmax", name="logits")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    data = cifar10_small
    model.fit(data.x_train[:300], data.y_train[:300], epochs=2, batch_size=32, verbose=0)
    return model, data


def channel_means(model, layer, x):
    """Independent capture of a layer's neurons: its output, averaged over positions."""
    values = keras.Model(model.inputs, model.get_layer(layer).output).predict(x, verbose=0)
    return values.mean(axis=(1, 2)) if values.ndim == 4 else values


@pytest.mark.slow
@pytest.mark.parametrize("layer", [None, "block_out"], ids=["default-dense", "conv"])
def test_end_to_end_on_cifar10(cifar_resnet, layer):
    model, data = cifar_resnet
    importance = ImportanceProfile.build(
        model, batches(data.x_train, data.y_train, 128), layer=layer, m=4, seed=0
    )
    subject = "pool" if layer is None else layer
    assert importance.subject_layer == subject and importance.conv == (layer is not None)
    correct = model.predict(data.x_train, verbose=0).argmax(axis=1) == data.y_train
    assert importance.inputs_used == int(correct.sum())

    train_values = channel_means(model, subject, data.x_train)[correct]
    for j, centroids in zip(importance.important, importance.centroids, strict=True):
        assert 1 <= len(centroids) <= 4
        np.testing.assert_allclose(
            centroids,
            cluster_values(train_values[:, j], seed=0, drop_zeros=layer is None),
            rtol=1e-4,
        )

    # Coverage of the test images, with the subject layer passed as an extra layer.
    test_values = channel_means(model, subject, data.x_test)
    layout = NeuronLayout(("logits",), (10,))
    profile = TrainingProfile("e2e", layout, RangeStats.empty(10), importance)

    def batch(rows):
        return ActivationBatch(
            layout, np.zeros((len(rows), 10), np.float32), {subject: test_values[rows]}
        )

    whole = ImportanceDrivenCoverage(layout, profile, m=4, layer=layer)
    whole.update(batch(np.arange(len(test_values))))
    expected = nearest_combinations(test_values[:, importance.important], importance.centroids)
    coverage = whole.coverage()
    assert coverage.covered == len(expected)
    assert coverage.total == np.prod(importance.cluster_counts)
    assert 1 <= coverage.covered <= whole.max_reachable()

    halves = [ImportanceDrivenCoverage(layout, profile, m=4, layer=layer) for _ in range(2)]
    halves[0].update(batch(np.arange(0, len(test_values), 2)))
    halves[1].update(batch(np.arange(1, len(test_values), 2)))
    halves[0].merge(halves[1])
    np.testing.assert_array_equal(halves[0].codes_, whole.codes_)


@pytest.mark.slow
def test_coverage_meter_measures_idc_on_the_subject_layer(cifar_resnet):
    from pytest_dlcoverage.engine import CoverageMeter

    model, data = cifar_resnet
    meter = CoverageMeter(model, criteria=("idc",), params={"idc": {"m": 4}}, progress=False)
    meter.fit(data.x_train, data.y_train)
    importance = meter.profile_.importance
    assert importance.subject_layer == "pool"

    measured = meter.measure(data.x_test)["idc"]
    test_values = channel_means(model, "pool", data.x_test)
    expected = nearest_combinations(test_values[:, importance.important], importance.centroids)
    assert (measured.covered, measured.total) == (len(expected), importance.combinations)


def test_training_labels_outside_the_classes_are_refused(cifar_resnet):
    model, data = cifar_resnet
    x, y = data.x_train[:50], data.y_train[:50]
    with pytest.raises(DLCoverageError, match=r"idc: training batch 0: .*integers in \[0, 10\)"):
        ImportanceProfile.build(model, [(x, y + 5)], m=2)
