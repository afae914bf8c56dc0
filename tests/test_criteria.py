"""Hand-computed coverage of NC, KMNC, NBC, SNAC and TKNC on tiny layouts, their
parameter and input validation, serialisation and merging."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_dlcoverage.criteria import REGISTRY, Criterion
from pytest_dlcoverage.errors import DLCoverageError, IncompatibleStateError
from pytest_dlcoverage.layout import ActivationBatch, NeuronLayout
from pytest_dlcoverage.profile import RangeStats, TrainingProfile
from pytest_dlcoverage.results import Coverage

NEURON_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")

# Two layers: "a" with two neurons, "b" with one. The training range of b is a single
# point, which KMNC treats as a neuron with no sections that can be hit.
LAYOUT = NeuronLayout(("a", "b"), (2, 1))
LOW = np.array([0.0, -1.0, 2.0])
HIGH = np.array([4.0, 1.0, 2.0])


def make_profile(
    layout: NeuronLayout, low, high, fingerprint: str = "profile-1"
) -> TrainingProfile:
    """Returns a profile with the given per-neuron ranges (mean and m2 are unused here)."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    ranges = RangeStats(count=10, low=low, high=high, mean=(low + high) / 2, m2=np.ones_like(low))
    return TrainingProfile(fingerprint, layout, ranges)


PROFILE = make_profile(LAYOUT, LOW, HIGH)


def batch(layout: NeuronLayout, rows) -> ActivationBatch:
    """Returns an activation batch from a list of rows."""
    return ActivationBatch(layout, np.asarray(rows, dtype=np.float32).reshape(-1, layout.size))


def measured(name: str, layout: NeuronLayout, rows, profile=PROFILE, **params) -> Criterion:
    """Returns criterion `name` after one update with `rows`."""
    criterion = REGISTRY[name](layout, profile, **params)
    criterion.update(batch(layout, rows))
    return criterion


# -- NC -------------------------------------------------------------------------------


NC_LAYOUT = NeuronLayout(("a", "b"), (3, 2))
# Input 1: a scales to [0, 0.5, 1], b is constant (scaled to 0, covers nothing).
# Input 2: a scales to [1, 0.875, 0], b to [0, 1].
NC_ROWS = [[0, 1, 2, 5, 5], [4, 3.5, 0, -1, 1]]


def test_nc_scaled_covers_values_above_threshold_after_per_layer_scaling():
    first = measured("nc", NC_LAYOUT, NC_ROWS[:1], None)
    assert first.coverage() == Coverage(1, 5)
    assert first.covered_[:, 0].tolist() == [False, False, True, False, False]

    both = measured("nc", NC_LAYOUT, NC_ROWS, None)
    assert both.coverage() == Coverage(4, 5)
    assert both.per_layer() == {"a": Coverage(3, 3), "b": Coverage(1, 2)}
    assert both.inputs == 2


def test_nc_scaled_threshold_is_strict_and_configurable():
    # 0.875 is not above 0.9, so neuron a1 stays uncovered.
    high = measured("nc", NC_LAYOUT, NC_ROWS, None, threshold=0.9)
    assert high.covered_[:, 0].tolist() == [True, False, True, False, True]

    # Scaled values [0, 0.75, 1]: 0.75 is not above the threshold 0.75.
    exact = measured("nc", NeuronLayout(("a",), (3,)), [[0, 3, 4]], None)
    assert exact.covered_[:, 0].tolist() == [False, False, True]

    # Threshold 0 covers everything above the layer's minimum; a constant layer nothing.
    zero = measured("nc", NC_LAYOUT, NC_ROWS[:1], None, threshold=0.0)
    assert zero.covered_[:, 0].tolist() == [False, True, True, False, False]


def test_nc_raw_compares_activations_to_threshold():
    raw = measured("nc", NC_LAYOUT, NC_ROWS, None, scaled=False, threshold=4.5)
    assert raw.covered_[:, 0].tolist() == [False, False, False, True, True]
    assert raw.per_layer() == {"a": Coverage(0, 3), "b": Coverage(2, 2)}

    # 4.0 is not above 4.0; a negative threshold is allowed in raw mode.
    assert measured("nc", NC_LAYOUT, NC_ROWS, None, scaled=False, threshold=4.0).coverage() == (
        Coverage(2, 5)
    )
    negative = measured("nc", NC_LAYOUT, NC_ROWS[1:], None, scaled=False, threshold=-0.5)
    assert negative.covered_[:, 0].tolist() == [True, True, True, False, True]


def test_nc_raw_mode_has_its_own_default_threshold_zero():
    assert REGISTRY["nc"].validate_params(scaled=False) == {"threshold": 0.0, "scaled": False}
    assert REGISTRY["nc"].validate_params(scaled=True)["threshold"] == 0.75
    assert REGISTRY["nc"].validate_params(scaled=False, threshold=0.75)["threshold"] == 0.75
    # Positive values below the scaled default 0.75 cover in raw mode; 0 itself does not.
    raw = measured("nc", NC_LAYOUT, [[0.5, 0.1, 0.0, 0.7, -1.0]], None, scaled=False)
    assert raw.covered_[:, 0].tolist() == [True, True, False, True, False]


def test_nc_needs_no_profile_and_defaults():
    criterion = REGISTRY["nc"](NC_LAYOUT)
    assert criterion.params == {"threshold": 0.75, "scaled": True}
    assert criterion.coverage() == Coverage(0, 5)
    assert criterion.profile_fingerprint is None


# -- KMNC -----------------------------------------------------------------------------


def test_kmnc_sections_by_hand():
    # k = 4: neuron a0 has sections of width 1 over [0, 4], a1 of width 0.5 over [-1, 1].
    rows = [
        [0.5, 0.0, 2.0],  # a0 section 0, a1 section 2; b equals its one-point range
        [4.0, 1.0, 2.0],  # both at high: last section (3)
        [4.5, -2.0, 3.0],  # all outside the range: nothing
        [1.0, -1.0, 1.0],  # a0 on the boundary of section 1, a1 at low: section 0
    ]
    criterion = measured("kmnc", LAYOUT, rows, k=4)
    assert criterion.covered_.astype(int).tolist() == [
        [1, 1, 0, 1],
        [1, 0, 1, 1],
        [0, 0, 0, 0],
    ]
    assert criterion.coverage() == Coverage(6, 12)
    assert criterion.per_layer() == {"a": Coverage(6, 8), "b": Coverage(0, 4)}


@pytest.mark.parametrize(
    ("high", "k", "value", "section"),
    [
        (3.0, 3, 0.0, 0),
        (3.0, 3, 0.999, 0),
        (3.0, 3, 1.0, 1),
        (3.0, 3, 2.0, 2),
        (3.0, 3, 3.0, 2),
        # 13 / 23 * 23 is 12.999999999999998 in floating point; the section is 13.
        (23.0, 23, 13.0, 13),
        (22.0, 22, 15.0, 15),
    ],
)
def test_kmnc_boundary_values_fall_in_the_upper_section(high, k, value, section):
    # Range [0, high] in k sections of width high / k: a value j * high / k starts
    # section j, whatever rounding a naive (v - low) / width * k would do.
    layout = NeuronLayout(("a",), (1,))
    criterion = measured("kmnc", layout, [[value]], make_profile(layout, [0.0], [high]), k=k)
    assert np.flatnonzero(criterion.covered_[0]).tolist() == [section]


def test_kmnc_one_point_range_is_never_covered():
    layout = NeuronLayout(("dead",), (2,))
    profile = make_profile(layout, [0.0, 0.0], [0.0, 1.0])
    criterion = measured("kmnc", layout, [[0.0, 0.0], [0.5, 0.5], [-1.0, 1.0]], profile, k=2)
    assert criterion.covered_.astype(int).tolist() == [[0, 0], [1, 1]]
    assert criterion.coverage() == Coverage(2, 4)


def test_kmnc_defaults_to_1000_sections():
    criterion = REGISTRY["kmnc"](LAYOUT, PROFILE)
    assert criterion.params == {"k": 1000}
    assert criterion.coverage() == Coverage(0, 3000)
    criterion.update(batch(LAYOUT, [[0.0025, 0.999, 2.0]]))
    # a0: 0.0025 / 4 * 1000 = 0.625 -> section 0; a1: 1.999 / 2 * 1000 = 999.5 -> 999.
    assert np.argwhere(criterion.covered_).tolist() == [[0, 0], [1, 999]]


# -- NBC and SNAC ---------------------------------------------------------------------

CORNER_ROWS = [
    [-0.5, 1.0, 2.0],  # a0 below low; a1 at high and b at its point: no corner
    [4.0, 1.5, 2.5],  # a0 at high: nothing; a1 and b above high
]


def test_nbc_corners_by_hand():
    criterion = measured("nbc", LAYOUT, CORNER_ROWS)
    assert criterion.covered_.astype(int).tolist() == [[1, 0], [0, 1], [0, 1]]
    assert criterion.coverage() == Coverage(3, 6)
    assert criterion.per_layer() == {"a": Coverage(2, 4), "b": Coverage(1, 2)}


def test_snac_counts_upper_corners_only():
    criterion = measured("snac", LAYOUT, CORNER_ROWS)
    assert criterion.covered_[:, 0].tolist() == [False, True, True]
    assert criterion.coverage() == Coverage(2, 3)
    assert criterion.per_layer() == {"a": Coverage(1, 2), "b": Coverage(1, 1)}


# -- TKNC -----------------------------------------------------------------------------


def test_tknc_by_hand_with_ties_and_small_layers():
    layout = NeuronLayout(("a", "b", "c"), (4, 1, 3))
    rows = [
        # a: top two are a1 (5), a2 (3); b has fewer than k neurons; c ties: c0, c1.
        [1, 5, 3, 2, 7, 0, 0, 0],
        # a: three-way tie at 2, first by position: a0, a1; c: c0 and c2 tie at 1.
        [2, 2, 1, 2, -7, 1, -1, 1],
    ]
    criterion = measured("tknc", layout, rows, None, k=2)
    assert criterion.covered_[:, 0].tolist() == [True, True, True, False, True, True, True, True]
    assert criterion.coverage() == Coverage(7, 8)
    assert criterion.per_layer() == {"a": Coverage(3, 4), "b": Coverage(1, 1), "c": Coverage(3, 3)}


def test_tknc_ties_in_a_wide_layer_go_to_the_first_neurons():
    # One input per row; every value is 0 or 1, so the top 3 are the first three ones.
    layout = NeuronLayout(("wide",), (64,))
    rows = np.random.default_rng(0).integers(0, 2, size=(20, 64))
    expected = np.zeros(64, dtype=bool)
    for row in rows:
        expected[np.flatnonzero(row == 1)[:3]] = True
    criterion = measured("tknc", layout, rows, None)
    assert criterion.covered_[:, 0].tolist() == expected.tolist()


def test_tknc_default_k_is_three():
    layout = NeuronLayout(("a",), (5,))
    criterion = measured("tknc", layout, [[0.1, 0.5, 0.3, 0.9, 0.2]], None)
    assert criterion.params == {"k": 3}
    assert criterion.covered_[:, 0].tolist() == [False, True, True, True, False]


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "words"),
    [
        ("nc", {"threshold": 1.5}, ["threshold", "[0, 1]", "1.5"]),
        ("nc", {"threshold": -0.1}, ["threshold", "-0.1"]),
        ("nc", {"threshold": float("nan")}, ["threshold", "finite", "nan"]),
        ("nc", {"threshold": "0.5"}, ["threshold", "'0.5'"]),
        ("nc", {"threshold": True}, ["threshold", "True"]),
        ("nc", {"scaled": "yes"}, ["scaled", "'yes'"]),
        ("nc", {"scaled": False, "threshold": float("inf")}, ["threshold", "inf"]),
        ("nc", {"k": 3}, ["unknown", "'k'"]),
        ("kmnc", {"k": 0}, ["k", "positive integer", "k=0"]),
        ("kmnc", {"k": 2.5}, ["k", "2.5"]),
        ("kmnc", {"k": True}, ["k", "True"]),
        ("kmnc", {"threshold": 0.5}, ["unknown", "threshold"]),
        ("tknc", {"k": -1}, ["k", "positive integer", "-1"]),
        ("tknc", {"k": "3"}, ["k", "'3'"]),
        ("nbc", {"k": 2}, ["nbc", "no parameters", "k"]),
        ("snac", {"k": 2}, ["snac", "no parameters", "k"]),
    ],
)
def test_invalid_parameters_are_refused_with_a_message(name, params, words):
    with pytest.raises(DLCoverageError) as error:
        REGISTRY[name](LAYOUT, PROFILE, **params)
    message = str(error.value)
    assert message.startswith(name)
    for word in words:
        assert word in message


def test_valid_parameters_are_normalised():
    assert REGISTRY["nc"].validate_params(threshold=1, scaled=False) == {
        "threshold": 1.0,
        "scaled": False,
    }
    assert REGISTRY["nc"].validate_params(threshold=np.float32(0.5))["threshold"] == 0.5
    assert REGISTRY["nc"].validate_params(scaled=False, threshold=-3)["threshold"] == -3.0
    assert REGISTRY["kmnc"].validate_params(k=np.int64(7)) == {"k": 7}
    assert REGISTRY["tknc"].validate_params(k=1) == {"k": 1}


@pytest.mark.parametrize("name", NEURON_CRITERIA)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_raise_naming_criterion_and_layer(name, bad):
    criterion = REGISTRY[name](LAYOUT, PROFILE)
    rows = np.array([[0.5, 0.5, 2.0], [0.5, 0.5, bad]], dtype=np.float32)
    with pytest.raises(DLCoverageError) as error:
        criterion.update(ActivationBatch(LAYOUT, rows))
    message = str(error.value)
    assert message.startswith(name)
    assert "layer 'b'" in message
    assert "input 1" in message
    assert criterion.inputs == 0
    assert not criterion.covered_.any()


@pytest.mark.parametrize("name", NEURON_CRITERIA)
@pytest.mark.parametrize("shape", [(2, 4), (2, 2), (3,), (1, 3, 1)])
def test_activations_of_the_wrong_shape_raise(name, shape):
    criterion = REGISTRY[name](LAYOUT, PROFILE)
    values = np.zeros(shape, dtype=np.float32)
    with pytest.raises(DLCoverageError, match=rf"{name}: expected activations of shape"):
        criterion.update(ActivationBatch(LAYOUT, values))


@pytest.mark.parametrize("name", NEURON_CRITERIA)
def test_activations_of_another_layout_raise(name):
    criterion = REGISTRY[name](LAYOUT, PROFILE)
    other = NeuronLayout(("a", "c"), (2, 1))
    with pytest.raises(DLCoverageError, match="layout does not match"):
        criterion.update(batch(other, [[0, 0, 0]]))


@pytest.mark.parametrize("name", ["kmnc", "nbc", "snac"])
def test_profile_criteria_check_their_profile(name):
    with pytest.raises(DLCoverageError, match="needs a training profile"):
        REGISTRY[name](LAYOUT).update(batch(LAYOUT, [[0, 0, 0]]))

    other_layout = NeuronLayout(("a", "b"), (1, 2))
    with pytest.raises(DLCoverageError, match=rf"{name}: expected a training profile of layers"):
        REGISTRY[name](LAYOUT, make_profile(other_layout, LOW, HIGH))

    empty = TrainingProfile("empty", LAYOUT, RangeStats.empty(LAYOUT.size))
    with pytest.raises(DLCoverageError, match=r"neuron 0 of layer 'a' \(profile built from 0"):
        REGISTRY[name](LAYOUT, empty)


def test_an_empty_batch_changes_nothing():
    for name in NEURON_CRITERIA:
        criterion = REGISTRY[name](LAYOUT, PROFILE)
        criterion.update(ActivationBatch(LAYOUT, np.zeros((0, 3), dtype=np.float32)))
        assert criterion.inputs == 0
        assert criterion.coverage().covered == 0


# -- serialisation and merging --------------------------------------------------------

SOME_ROWS = [[0.5, 0.0, 2.0], [4.5, -2.0, 1.0], [1.0, 1.0, 2.5]]


@pytest.mark.parametrize("name", NEURON_CRITERIA)
def test_serialisation_round_trip(name):
    params = {"kmnc": {"k": 5}, "tknc": {"k": 1}, "nc": {"threshold": 0.5}}.get(name, {})
    original = measured(name, LAYOUT, SOME_ROWS, **params)
    assert original.coverage().covered > 0

    for profile in (PROFILE, None):
        restored = Criterion.from_bytes(original.to_bytes(), profile)
        assert type(restored) is type(original)
        assert restored.params == original.params
        assert restored.inputs == 3
        assert restored.header() == original.header()
        np.testing.assert_array_equal(restored.covered_, original.covered_)
        assert restored.coverage() == original.coverage()
        assert restored.per_layer() == original.per_layer()

    # With the profile attached the restored state keeps measuring like the original.
    restored = Criterion.from_bytes(original.to_bytes(), PROFILE)
    more = batch(LAYOUT, [[-3.0, 0.9, 9.0]])
    restored.update(more)
    original.update(more)
    np.testing.assert_array_equal(restored.covered_, original.covered_)


def test_restored_state_without_profile_merges_but_cannot_measure():
    original = measured("kmnc", LAYOUT, SOME_ROWS, k=5)
    restored = Criterion.from_bytes(original.to_bytes())
    fresh = REGISTRY["kmnc"](LAYOUT, PROFILE, k=5)
    fresh.merge(restored)
    np.testing.assert_array_equal(fresh.covered_, original.covered_)
    with pytest.raises(DLCoverageError, match="needs a training profile"):
        restored.update(batch(LAYOUT, [[0, 0, 0]]))


def test_corrupt_states_are_refused():
    data = measured("kmnc", LAYOUT, SOME_ROWS, k=5).to_bytes()
    with pytest.raises(DLCoverageError, match="payload must hold 2 bytes"):
        Criterion.from_bytes(data[:-1], PROFILE)
    with pytest.raises(DLCoverageError, match="payload must hold 2 bytes"):
        Criterion.from_bytes(data + b"\x00", PROFILE)
    with pytest.raises(DLCoverageError, match="expected a serialised criterion state"):
        Criterion.from_bytes(b"not a state")
    other = make_profile(LAYOUT, LOW, HIGH, fingerprint="profile-2")
    with pytest.raises(IncompatibleStateError, match="profile-2"):
        Criterion.from_bytes(data, other)


@pytest.mark.parametrize("name", NEURON_CRITERIA)
def test_merge_is_a_union(name):
    left = measured(name, LAYOUT, SOME_ROWS[:1])
    right = measured(name, LAYOUT, SOME_ROWS[1:])
    whole = measured(name, LAYOUT, SOME_ROWS)
    left.merge(right)
    np.testing.assert_array_equal(left.covered_, whole.covered_)
    assert left.inputs == 3
    assert right.inputs == 2


@pytest.mark.parametrize(
    ("left", "right", "differ"),
    [
        (("nc", {}), ("nc", {"threshold": 0.5}), "params"),
        (("nc", {}), ("nc", {"scaled": False}), "params"),
        (("kmnc", {"k": 4}), ("kmnc", {"k": 5}), "params"),
        (("tknc", {"k": 3}), ("tknc", {"k": 2}), "params"),
        (("nbc", {}), ("snac", {}), "criterion"),
    ],
)
def test_merging_states_of_different_settings_raises(left, right, differ):
    a = REGISTRY[left[0]](LAYOUT, PROFILE, **left[1])
    b = REGISTRY[right[0]](LAYOUT, PROFILE, **right[1])
    with pytest.raises(IncompatibleStateError, match=differ):
        a.merge(b)
    assert a.inputs == 0


def test_merging_states_of_different_layouts_or_profiles_raises():
    other_layout = NeuronLayout(("a", "c"), (2, 1))
    with pytest.raises(IncompatibleStateError, match="layout"):
        REGISTRY["tknc"](LAYOUT).merge(REGISTRY["tknc"](other_layout))

    other_profile = make_profile(LAYOUT, LOW - 1, HIGH + 1, fingerprint="profile-2")
    for name in ("kmnc", "nbc", "snac"):
        with pytest.raises(IncompatibleStateError, match="profile"):
            REGISTRY[name](LAYOUT, PROFILE).merge(REGISTRY[name](LAYOUT, other_profile))

    # NC and TKNC do not depend on the profile, so their states merge across profiles.
    for name in ("nc", "tknc"):
        mine = measured(name, LAYOUT, SOME_ROWS[:1])
        mine.merge(measured(name, LAYOUT, SOME_ROWS[1:], other_profile))
        assert mine.inputs == 3


@pytest.mark.parametrize("name", NEURON_CRITERIA)
def test_empty_copy_keeps_settings_and_drops_state(name):
    original = measured(name, LAYOUT, SOME_ROWS)
    copy = original.empty_copy()
    assert copy.header() == original.header()
    assert copy.inputs == 0
    assert not copy.covered_.any()
    assert original.coverage().covered > 0


# -- a real Keras model ---------------------------------------------------------------


def test_nc_on_activations_of_a_keras_model():
    keras = pytest.importorskip("keras")

    inputs = keras.Input(shape=(3,))
    h1 = keras.layers.Dense(2, activation="relu", name="h1")(inputs)
    h2 = keras.layers.Dense(3, activation="relu", name="h2")(h1)
    outputs = keras.layers.Dense(1, name="out")(h2)
    model = keras.Model(inputs, outputs)
    model.get_layer("h1").set_weights(
        [np.array([[1, -1], [0, 1], [2, 0]], dtype=np.float32), np.array([0, 0.5], np.float32)]
    )
    model.get_layer("h2").set_weights(
        [np.array([[1, 0, 1], [0, 1, -1]], dtype=np.float32), np.array([0, 0, 0.5], np.float32)]
    )
    capture = keras.Model(inputs, [model.get_layer("h1").output, model.get_layer("h2").output])

    x = np.array([[1, 2, 0], [-1, 0, 0], [0, 0, 1]], dtype=np.float32)
    h1_values, h2_values = (np.asarray(v) for v in capture(x))
    # By hand: h1 = relu(x W1 + b1), h2 = relu(h1 W2 + b2).
    np.testing.assert_array_equal(h1_values, [[1, 1.5], [0, 1.5], [2, 0.5]])
    np.testing.assert_array_equal(h2_values, [[1, 1.5, 0], [0, 1.5, 0], [2, 0.5, 2]])

    layout = NeuronLayout(("h1", "h2"), (2, 3))
    values = np.concatenate([h1_values, h2_values], axis=1)

    # Scaled: input 1 gives h1 [0, 1] and h2 [2/3, 1, 0]; input 2 gives h1 [0, 1] and
    # h2 [0, 1, 0]. Only the second neuron of each layer exceeds 0.75.
    nc = REGISTRY["nc"](layout)
    nc.update(ActivationBatch(layout, values[:2]))
    assert nc.covered_[:, 0].tolist() == [False, True, False, True, False]
    assert nc.per_layer() == {"h1": Coverage(1, 2), "h2": Coverage(1, 3)}
    # Input 3 gives h1 [1, 0] and h2 [1, 0, 1], covering the rest.
    nc.update(ActivationBatch(layout, values[2:]))
    assert nc.coverage() == Coverage(5, 5)

    # Raw mode, threshold 1: values of exactly 1 do not count.
    raw = REGISTRY["nc"](layout, scaled=False, threshold=1.0)
    raw.update(ActivationBatch(layout, values[:1]))
    assert raw.covered_[:, 0].tolist() == [False, True, False, True, False]
