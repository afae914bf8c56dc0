"""Hand-computed coverage of every criterion on a tiny Keras model with known weights,
measured through the public engine (`CoverageMeter.fit`, `new_states`, `observe`).

The model is Input(2) -> Dense(3, relu, "hidden") -> Dense(2, linear, "logits"):

    hidden = (h0, h1, h2) = (relu(x0), relu(x1), relu(x1 - x0))
    logits = (l0, l1)     = (h0 - h2, h1 - h2)

All weights, inputs and activations are small dyadic numbers, exact in float32, so
every number below is computed by hand and compared exactly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from pytest_dlcoverage import CoverageMeter
from pytest_dlcoverage.errors import ClusteringWarning
from pytest_dlcoverage.results import Coverage

NEURON_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")


@pytest.fixture(scope="module")
def model():
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="logits")(hidden)
    model = keras.Model(inputs, outputs)
    model.get_layer("hidden").set_weights(
        [np.array([[1, 0, -1], [0, 1, 1]], np.float32), np.zeros(3, np.float32)]
    )
    model.get_layer("logits").set_weights(
        [np.array([[1, 0], [0, 1], [-1, -1]], np.float32), np.zeros(2, np.float32)]
    )
    return model


def f32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


# -- NC, KMNC, NBC, SNAC and TKNC ----------------------------------------------------------

# Training inputs, for the per-neuron ranges [low, high]:
#   (4, 0): hidden (4, 0, 0)   logits ( 4, 0)
#   (0, 4): hidden (0, 4, 4)   logits (-4, 0)
#   (2, 2): hidden (2, 2, 0)   logits ( 2, 2)
# Ranges: h0, h1, h2 [0, 4]; l0 [-4, 4]; l1 [0, 2].
X_RANGES = f32([[4, 0], [0, 4], [2, 2]])

# Test inputs, measured in two steps: A, B, D, E first, then C.
#   A (0, 0):    hidden (0, 0, 0)     logits ( 0,  0)
#   B (4, 3):    hidden (4, 3, 0)     logits ( 4,  3)
#   D (-1, 2):   hidden (0, 2, 3)     logits (-3, -1)
#   E (-2, 5):   hidden (0, 5, 7)     logits (-7, -2)
#   C (4, 3.5):  hidden (4, 3.5, 0)   logits ( 4, 3.5)
X_FIRST = f32([[0, 0], [4, 3], [-1, 2], [-2, 5]])
LOGITS_FIRST = [[0, 0], [4, 3], [-3, -1], [-7, -2]]
X_SECOND = f32([[4, 3.5]])

# KMNC with k = 4 sections: width 1 for h0, h1, h2 ([0,1), [1,2), [2,3), [3,4]); width
# 2 for l0 ([-4,-2), [-2,0), [0,2), [2,4]); width 0.5 for l1 ([0,.5), ..., [1.5,2]).
#        h0    h1    h2    l0    l1
#   A    s0    s0    s0    s2    s0      (l0 = 0 starts section 2; l1 = 0 is low)
#   B    s3    s3    s0    s3    -       (h0 = 4 and l0 = 4 are high: last section)
#   D    s0    s2    s3    s0    -       (h1 = 2 starts section 2; l1 = -1 below low)
#   E    s0    -     -     -     -       (5, 7, -7, -2 all outside their ranges)
# Sections hit: h0 {0,3}, h1 {0,2,3}, h2 {0,3}, l0 {0,2,3}, l1 {0}: 2+3+2+3+1 = 11 of 20.
# C adds nothing: h0 4 -> s3, h1 3.5 -> s3, h2 0 -> s0, l0 4 -> s3, l1 3.5 outside.
#
# NBC and SNAC (strictly below low, strictly above high):
#   B: l1 3 > 2 upper.   D: l1 -1 < 0 lower.   E: h1 5 > 4 upper, h2 7 > 4 upper,
#   l0 -7 < -4 lower, l1 -2 < 0 lower.   (B's h0 = 4 is high, not above it.)
# Corners hit: h1 upper, h2 upper, l0 lower, l1 both: 5 of 10; upper ones: h1, h2, l1,
# 3 of 5. C adds nothing: its only corner is l1 upper (3.5 > 2).
#
# TKNC with k = 1, per input and layer the largest value (ties: the first neuron):
#   A: h0 (all equal), l0 (equal);  B: h0, l0;  D: h2, l1;  E: h2, l1;  C: h0, l0.
# Covered: h0, h2, l0, l1: 4 of 5.
#
# NC, threshold 0.75, each layer scaled by its own min and max for each input:
#   A: both layers constant: nothing.
#   B: hidden (1, 0.75, 0) -> h0 (0.75 is not above 0.75); logits (1, 0) -> l0.
#   D: hidden (0, 2/3, 1) -> h2;  logits (0, 1) -> l1.
#   E: hidden (0, 5/7, 1) -> h2;  logits (0, 1) -> l1.
# Covered: h0, h2, l0, l1: 4 of 5. C: hidden (1, 0.875, 0) adds h1: 5 of 5.
EXPECTED_FIRST = {
    "nc": {"hidden": Coverage(2, 3), "logits": Coverage(2, 2)},
    "kmnc": {"hidden": Coverage(7, 12), "logits": Coverage(4, 8)},
    "nbc": {"hidden": Coverage(2, 6), "logits": Coverage(3, 4)},
    "snac": {"hidden": Coverage(2, 3), "logits": Coverage(1, 2)},
    "tknc": {"hidden": Coverage(2, 3), "logits": Coverage(2, 2)},
}
EXPECTED_SECOND = {**EXPECTED_FIRST, "nc": {"hidden": Coverage(3, 3), "logits": Coverage(2, 2)}}


def total(per_layer: dict[str, Coverage]) -> Coverage:
    return Coverage(
        sum(c.covered for c in per_layer.values()), sum(c.total for c in per_layer.values())
    )


@pytest.fixture(scope="module")
def neuron_meter(model):
    meter = CoverageMeter(
        model,
        criteria=NEURON_CRITERIA,
        layers=["hidden", "logits"],
        params={"kmnc": {"k": 4}, "tknc": {"k": 1}},
        progress=False,
    )
    return meter.fit(X_RANGES)


def test_training_ranges_by_hand(neuron_meter):
    profile = neuron_meter.profile_
    assert neuron_meter.layout.names == ("hidden", "logits")
    assert profile.low.tolist() == [0, 0, 0, -4, 0]
    assert profile.high.tolist() == [4, 4, 4, 4, 2]


def test_neuron_criteria_by_hand(neuron_meter):
    states = neuron_meter.new_states()
    predictions = neuron_meter.observe(X_FIRST, states)
    np.testing.assert_array_equal(predictions, LOGITS_FIRST)
    for name, expected in EXPECTED_FIRST.items():
        assert states[name].per_layer() == expected, name
        assert states[name].coverage() == total(expected), name

    neuron_meter.observe(X_SECOND, states)
    for name, expected in EXPECTED_SECOND.items():
        assert states[name].per_layer() == expected, name
        assert states[name].coverage() == total(expected), name


def test_neuron_criteria_cells_by_hand(neuron_meter):
    # The same hand computation, cell by cell (neurons h0, h1, h2, l0, l1 in order).
    states = neuron_meter.new_states()
    neuron_meter.observe(X_FIRST, states)
    assert states["kmnc"].covered_.astype(int).tolist() == [
        [1, 0, 0, 1],
        [1, 0, 1, 1],
        [1, 0, 0, 1],
        [1, 0, 1, 1],
        [1, 0, 0, 0],
    ]
    # Columns: lower corner, upper corner.
    assert states["nbc"].covered_.astype(int).tolist() == [[0, 0], [0, 1], [0, 1], [1, 0], [1, 1]]
    assert states["snac"].covered_[:, 0].tolist() == [False, True, True, False, True]
    assert states["tknc"].covered_[:, 0].tolist() == [True, False, True, True, True]
    assert states["nc"].covered_[:, 0].tolist() == [True, False, True, True, True]


def test_batch_size_does_not_change_the_hand_values(neuron_meter):
    states = neuron_meter.new_states()
    neuron_meter.observe(np.concatenate([X_SECOND, X_FIRST[::-1]]), states, batch_size=2)
    for name, expected in EXPECTED_SECOND.items():
        assert states[name].per_layer() == expected, name


# -- IDC -----------------------------------------------------------------------------------

# The subject layer is "hidden", the input of the final Dense. The predicted class is
# argmax(h0 - h2, h1 - h2) = argmax(h0, h1), and the z-rule relevance of hidden neuron j
# for predicted class c is h_j * W[j, c] (bias 0): h0 for class 0; h1 and -h2 for class 1.
#
# Class 0, correctly classified: (a, 0), hidden (a, 0, 0), logits (a, 0), relevance
# (a, 0, 0), for a in two groups of five around 1 and 3:
GROUP = [-0.25, -0.125, 0.0, 0.125, 0.25]
CLASS_0 = [1 + d for d in GROUP] + [3 + d for d in GROUP]  # sum 5 + 15 = 20
# Class 1, correctly classified: (0, b), hidden (0, b, b), logits (-b, 0), relevance
# (0, b, -b), for b in three groups of four around 1, 3 and 5:
GROUP_OF_FOUR = [-0.25, -0.125, 0.125, 0.25]
CLASS_1 = [c + d for c in (1, 3, 5) for d in GROUP_OF_FOUR]  # sum 4 + 12 + 20 = 36
# Misclassified: (9, 0) labelled 1 is predicted 0. Counted, it would raise neuron 0's
# total to 38 (above neuron 1's 36) and add values 9 to its clusters.
MISCLASSIFIED = [9.0, 9.0]

X_IDC_TRAIN = f32(
    [[a, 0] for a in CLASS_0] + [[0, b] for b in CLASS_1] + [[a, 0] for a in MISCLASSIFIED]
)
Y_IDC_TRAIN = np.array([0] * len(CLASS_0) + [1] * len(CLASS_1) + [1, 1])

# Relevance totals over the 22 correct inputs: (20, 36, -36). The two largest, neuron 1
# then neuron 0, are the important neurons. (By absolute value neuron 2 would tie with
# neuron 1.)
# Clusters, zeros dropped: neuron 1 has the 12 values of CLASS_1 (class-0 inputs give
# h1 = 0), three tight groups: k = 3, centroids 1, 3, 5 (k = 2 would merge two groups,
# k = 4 split one, both with a lower silhouette). Neuron 0 has the 10 values of
# CLASS_0: k = 2, centroids 1 and 3. Total: 3 x 2 = 6 combinations.
#
# Test inputs, (cluster of neuron 1, cluster of neuron 0), equal distances going to the
# lower centroid:
#   (0, 0):    h1 0 -> 0,        h0 0 -> 0          (0, 0)  (zeros are not dropped here)
#   (3, 5):    h1 5 -> 2,        h0 3 -> 1          (2, 1)
#   (2, 2):    h1 2 -> 0 (tie),  h0 2 -> 0 (tie)    (0, 0) again
#   (4, 3.5):  h1 3.5 -> 1,      h0 4 -> 1          (1, 1)
#   (-7, 9):   h1 9 -> 2,        h0 0 -> 0          (2, 0)
# Covered 4 of 6; max_reachable min(6, 5) = 5. Then (1, 3): h1 3 -> 1, h0 1 -> 0 gives
# (1, 0): 5 of 6.
X_IDC_TEST = f32([[0, 0], [3, 5], [2, 2], [4, 3.5], [-7, 9]])
X_IDC_MORE = f32([[1, 3]])


@pytest.fixture(scope="module")
def idc_meter(model):
    meter = CoverageMeter(model, criteria=("idc",), params={"idc": {"m": 2}}, progress=False)
    return meter.fit(X_IDC_TRAIN, Y_IDC_TRAIN)


def test_idc_importance_by_hand(idc_meter):
    importance = idc_meter.profile_.importance
    assert importance.subject_layer == "hidden"
    assert importance.inputs_used == 22
    assert importance.relevance.tolist() == [20, 36, -36]
    assert importance.important.tolist() == [1, 0]
    assert importance.cluster_counts == (3, 2)
    np.testing.assert_allclose(importance.centroids[0], [1, 3, 5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(importance.centroids[1], [1, 3], rtol=0, atol=1e-12)


def test_idc_coverage_by_hand(idc_meter):
    states = idc_meter.new_states()
    idc_meter.observe(X_IDC_TEST, states)
    state = states["idc"]
    assert state.coverage() == Coverage(4, 6)
    assert state.max_reachable() == 5
    # Codes in mixed radix (neuron 1's cluster * 2 + neuron 0's): (0,0) 0, (1,1) 3,
    # (2,0) 4, (2,1) 5.
    assert state.codes_.tolist() == [0, 3, 4, 5]

    idc_meter.observe(X_IDC_MORE, states)
    assert state.coverage() == Coverage(5, 6)
    assert state.max_reachable() == 6
    assert state.codes_.tolist() == [0, 2, 3, 4, 5]


def test_idc_neuron_with_few_non_zero_values_gets_centroid_zero(model):
    # Only five class-0 inputs, a in 1 + GROUP (sum 5): neuron 0 keeps its place among
    # the important neurons (totals (5, 36, -36)), but has 5 non-zero values, fewer than
    # 10, so its single centroid is 0. Total: 3 x 1 = 3 combinations.
    x = f32([[1 + d, 0] for d in GROUP] + [[0, b] for b in CLASS_1])
    y = np.array([0] * 5 + [1] * len(CLASS_1))
    meter = CoverageMeter(model, criteria=("idc",), params={"idc": {"m": 2}}, progress=False)
    with pytest.warns(ClusteringWarning, match="5 non-zero"):
        meter.fit(x, y)
    importance = meter.profile_.importance
    assert importance.relevance.tolist() == [5, 36, -36]
    assert importance.important.tolist() == [1, 0]
    assert importance.cluster_counts == (3, 1)
    assert importance.centroids[1].tolist() == [0]

    # Neuron 1's clusters of the first three test inputs: 0, 2, 0 (h1 = 0, 5, 2).
    states = meter.new_states()
    meter.observe(X_IDC_TEST[:3], states)
    assert states["idc"].coverage() == Coverage(2, 3)
    # (4, 3.5): h1 3.5 -> cluster 1.
    meter.observe(X_IDC_TEST[3:4], states)
    assert states["idc"].coverage() == Coverage(3, 3)
