"""Properties of the IDC criterion state, checked on random importance profiles (important
neurons and their centroids) and random subject-layer activations: agreement with a
plain nearest-centroid count written here in exact arithmetic, monotonicity,
independence of input order and batching, merge equal to the whole, covered <=
max_reachable <= total, and serialisation round trips. Profiles with more combinations
than int64 holds are drawn too, so both code representations are exercised."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_idc import hand_profile

from pytest_dlcoverage.criteria import Criterion
from pytest_dlcoverage.criteria.idc import ImportanceDrivenCoverage
from pytest_dlcoverage.layout import ActivationBatch
from pytest_dlcoverage.profile import TrainingProfile

LAYER = "subject"
# Centroids on a grid of quarters and activations often on a grid of eighths: midpoints
# between centroids (ties, which go to the lower centroid) are common.
CENTROID_GRID = [i / 4 for i in range(-12, 13)]
EIGHTHS = [i / 8 for i in range(-32, 33)]
# Multiples of 2**-10: every distance to a centroid is exact in float64, so the state
# must agree with the exact reference bit for bit.
DYADIC = st.one_of(st.sampled_from(EIGHTHS), st.integers(-5120, 5120).map(lambda i: i / 1024))
# Any float32 (tiny and subnormal ones included) for the properties that need no exactness.
ANY = st.one_of(
    st.sampled_from(EIGHTHS), st.floats(-5, 5, width=32, allow_nan=False, allow_infinity=False)
)
# A profile of 40 important neurons with 3 or 4 centroids each has more than 3**40
# combinations, beyond int64, so its states keep their codes as Python integers.
WIDE_M = 40


@st.composite
def cases(draw, values=ANY) -> tuple[TrainingProfile, np.ndarray]:
    """Returns (profile, subject-layer activations of shape (n, neurons)).

    Mostly a few important neurons with 1 to 4 centroids each and activations drawn
    from `values`; sometimes a wide profile (`WIDE_M` important neurons) whose
    centroids and activations come from a numpy generator seeded by the draw, which
    keeps the drawing fast (the values follow `values` in kind: dyadic or any float32).
    """
    rows = draw(st.integers(0, 12))
    if draw(st.integers(0, 4)) == 0:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        neurons = WIDE_M + int(rng.integers(0, 4))
        important = rng.permutation(neurons)[:WIDE_M]
        centroids = [
            np.sort(rng.choice(CENTROID_GRID, size=rng.integers(3, 5), replace=False))
            for _ in range(WIDE_M)
        ]
        if values is DYADIC:
            fine = rng.integers(-5120, 5121, size=(rows, neurons)) / 1024
        else:
            fine = rng.uniform(-5, 5, size=(rows, neurons))
        coarse = rng.choice(EIGHTHS, size=(rows, neurons))
        cells = np.where(rng.random((rows, neurons)) < 0.5, coarse, fine)
        return hand_profile(centroids, important, neurons, LAYER), cells.astype(np.float32)

    m = draw(st.integers(1, 5))
    neurons = m + draw(st.integers(0, 3))
    important = draw(st.permutations(range(neurons)))[:m]
    centroids = [
        sorted(draw(st.lists(st.sampled_from(CENTROID_GRID), min_size=c, max_size=c, unique=True)))
        for c in draw(st.lists(st.integers(1, 4), min_size=m, max_size=m))
    ]
    cells = draw(st.lists(values, min_size=rows * neurons, max_size=rows * neurons))
    activations = np.array(cells, dtype=np.float32).reshape(rows, neurons)
    return hand_profile(centroids, important, neurons, LAYER), activations


def measured(profile: TrainingProfile, *parts: np.ndarray) -> ImportanceDrivenCoverage:
    """Returns an IDC state that was updated with each of `parts` in turn."""
    state = ImportanceDrivenCoverage(profile.layout, profile, m=profile.importance.m)
    for part in parts:
        state.update(ActivationBatch(profile.layout, part))
    return state


def reference_codes(profile: TrainingProfile, values: np.ndarray) -> list[int]:
    """Returns the sorted distinct combinations of `values`, each as the mixed-radix
    integer of its tuple of nearest-centroid indices (first important neuron most
    significant), computed one input at a time in exact rational arithmetic."""
    importance = profile.importance
    codes = set()
    for row in values:
        code = 0
        for j, centroids in zip(importance.important, importance.centroids, strict=True):
            value = Fraction(float(row[j]))
            distances = [(abs(value - Fraction(float(c))), i) for i, c in enumerate(centroids)]
            code = code * len(centroids) + min(distances)[1]  # ties: the lower index
        codes.add(code)
    return sorted(codes)


@settings(max_examples=80, deadline=None)
@given(cases(DYADIC))
def test_matches_the_exact_reference(case):
    profile, values = case
    state = measured(profile, values)
    expected = reference_codes(profile, values)
    assert [int(code) for code in state.codes_] == expected
    assert state.coverage().covered == len(expected)
    total = math.prod(len(c) for c in profile.importance.centroids)
    assert state.coverage().total == total
    # Codes beyond int64 are Python integers.
    assert state.codes_.dtype == (object if total > 2**63 else np.int64)


@settings(max_examples=40, deadline=None)
@given(cases(), st.data())
def test_adding_inputs_never_uncovers(case, data):
    profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    before = measured(profile, values[:cut])
    after = measured(profile, values[:cut], values[cut:])
    assert set(before.codes_.tolist()) <= set(after.codes_.tolist())
    assert before.coverage().covered <= after.coverage().covered
    assert before.coverage().total == after.coverage().total
    assert before.max_reachable() <= after.max_reachable()


@settings(max_examples=40, deadline=None)
@given(cases(), st.data())
def test_order_and_batching_do_not_matter(case, data):
    profile, values = case
    order = data.draw(st.permutations(range(len(values))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    parts = np.split(values[list(order)], cuts)
    whole = measured(profile, values)
    pieces = measured(profile, *parts)
    assert pieces.codes_.tolist() == whole.codes_.tolist()
    assert pieces.coverage() == whole.coverage()
    assert pieces.inputs == whole.inputs == len(values)


@settings(max_examples=40, deadline=None)
@given(cases(), st.data())
def test_merge_of_two_halves_equals_the_whole(case, data):
    profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    left, right = measured(profile, values[:cut]), measured(profile, values[cut:])
    whole = measured(profile, values)
    left.merge(right)
    assert left.codes_.tolist() == whole.codes_.tolist()
    assert left.coverage() == whole.coverage()
    assert left.inputs == whole.inputs
    assert left.max_reachable() == whole.max_reachable()


@settings(max_examples=40, deadline=None)
@given(cases())
def test_covered_is_bounded_by_max_reachable_and_total(case):
    profile, values = case
    state = measured(profile, values)
    coverage = state.coverage()
    assert coverage.total == profile.importance.combinations
    assert state.max_reachable() == min(coverage.total, len(values))
    assert 0 <= coverage.covered <= state.max_reachable() <= coverage.total
    assert 0 <= coverage.fraction <= 1
    if len(values):
        assert coverage.covered >= 1


@settings(max_examples=40, deadline=None)
@given(cases(), st.data())
def test_serialisation_round_trip(case, data):
    profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    original = measured(profile, values[:cut])
    encoded = original.to_bytes()

    # Without the profile, the state still reports and merges.
    bare = Criterion.from_bytes(encoded)
    assert isinstance(bare, ImportanceDrivenCoverage)
    assert bare.coverage() == original.coverage()
    assert bare.max_reachable() == original.max_reachable()
    assert bare.cluster_counts == original.cluster_counts
    fresh = measured(profile)
    fresh.merge(bare)
    assert fresh.codes_.tolist() == original.codes_.tolist()

    # With it, the restored state carries on exactly like the original.
    restored = Criterion.from_bytes(encoded, profile)
    assert restored.header() == original.header()
    assert restored.inputs == original.inputs
    assert restored.codes_.tolist() == original.codes_.tolist()
    rest = ActivationBatch(profile.layout, values[cut:])
    restored.update(rest)
    original.update(rest)
    assert restored.codes_.tolist() == original.codes_.tolist()
    assert restored.to_bytes() == original.to_bytes()
