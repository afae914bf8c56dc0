"""Properties every neuron-coverage criterion must have, checked on random layouts,
profiles and activations: agreement with a plain per-input reference written here in
exact arithmetic, monotonicity, independence of input order and batching, merge
equal to the whole, coverage in [0, 1], and serialisation round trips."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_dlcoverage.criteria import REGISTRY, Criterion
from pytest_dlcoverage.layout import ActivationBatch, NeuronLayout
from pytest_dlcoverage.profile import RangeStats, TrainingProfile

# Values on a coarse grid make ties, range boundaries and section boundaries common.
GRID = [-3.0, -1.5, -1.0, -0.25, 0.0, 0.5, 1.0, 1.25, 2.0, 3.0]
# Multiples of 2**-10 keep every difference and product of the criteria exact in
# float64, so the criteria must agree with the exact reference bit for bit.
DYADIC = st.one_of(st.sampled_from(GRID), st.integers(-4096, 4096).map(lambda i: i / 1024))
# Any float32 (tiny and subnormal ones included) for the properties that need no exactness.
ANY = st.one_of(
    st.sampled_from(GRID),
    st.floats(-4, 4, width=32, allow_nan=False, allow_infinity=False),
)

# (criterion, parameters) pairs; thresholds are exact binary fractions so that the
# exact reference and the floating-point criterion agree on which side they fall.
SETTINGS = st.one_of(
    st.tuples(
        st.just("nc"),
        st.fixed_dictionaries(
            {"threshold": st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), "scaled": st.just(True)}
        ),
    ),
    st.tuples(
        st.just("nc"),
        st.fixed_dictionaries(
            {"threshold": st.sampled_from([-1.0, 0.0, 0.5, 2.0]), "scaled": st.just(False)}
        ),
    ),
    st.tuples(st.just("kmnc"), st.fixed_dictionaries({"k": st.integers(1, 7)})),
    st.tuples(st.just("nbc"), st.just({})),
    st.tuples(st.just("snac"), st.just({})),
    st.tuples(st.just("tknc"), st.fixed_dictionaries({"k": st.integers(1, 4)})),
)


@st.composite
def cases(draw, values=ANY):
    """Returns (criterion name, params, layout, profile, activations of shape (n, size)),
    with activations and training ranges drawn from `values`."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    layout = NeuronLayout(tuple(f"layer{i}" for i in range(len(sizes))), tuple(sizes))
    low = np.array(draw(st.lists(values, min_size=layout.size, max_size=layout.size)))
    widths = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 3.0]), values.map(abs))
    width = np.array(draw(st.lists(widths, min_size=layout.size, max_size=layout.size)))
    high = (low.astype(np.float32) + width.astype(np.float32)).astype(np.float64)
    ranges = RangeStats(5, low, high, (low + high) / 2, np.ones(layout.size))
    profile = TrainingProfile("random-profile", layout, ranges)
    rows = draw(st.integers(1, 12))
    cells = draw(st.lists(values, min_size=rows * layout.size, max_size=rows * layout.size))
    activations = np.array(cells, dtype=np.float32).reshape(rows, layout.size)
    name, params = draw(SETTINGS)
    return name, params, layout, profile, activations


def fresh(name, params, layout, profile) -> Criterion:
    return REGISTRY[name](layout, profile, **params)


def measured(name, params, layout, profile, *parts: np.ndarray) -> Criterion:
    """Returns a criterion that was updated with each of `parts` in turn."""
    criterion = fresh(name, params, layout, profile)
    for part in parts:
        criterion.update(ActivationBatch(layout, part))
    return criterion


def reference(name, params, layout, profile, values) -> np.ndarray:
    """Returns the covered cells, shape (size, cells), computed one input and one neuron
    at a time from the definitions, in exact rational arithmetic."""
    low = [Fraction(float(v)) for v in profile.low]
    high = [Fraction(float(v)) for v in profile.high]
    k = params.get("k", 1)
    cells = {"kmnc": k, "nbc": 2}.get(name, 1)
    covered = np.zeros((layout.size, cells), dtype=bool)
    for row in values:
        exact = [Fraction(float(v)) for v in row]
        for start, size in zip(layout.offsets, layout.sizes, strict=True):
            neurons = range(start, start + size)
            if name == "nc":
                threshold = Fraction(params["threshold"])
                layer = [exact[i] for i in neurons]
                smallest, spread = min(layer), max(layer) - min(layer)
                for i in neurons:
                    if params["scaled"]:
                        value = (exact[i] - smallest) / spread if spread else Fraction(0)
                    else:
                        value = exact[i]
                    covered[i, 0] |= value > threshold
            elif name == "tknc":
                ranked = sorted(neurons, key=lambda i: (-exact[i], i))
                for i in ranked[:k]:
                    covered[i, 0] = True
            else:
                for i in neurons:
                    v = exact[i]
                    if name == "nbc":
                        covered[i, 0] |= v < low[i]
                        covered[i, 1] |= v > high[i]
                    elif name == "snac":
                        covered[i, 0] |= v > high[i]
                    elif low[i] <= v <= high[i] and high[i] > low[i]:
                        section = math.floor((v - low[i]) * k / (high[i] - low[i]))
                        covered[i, min(section, k - 1)] = True
    return covered


@settings(max_examples=150, deadline=None)
@given(cases(DYADIC))
def test_matches_the_exact_reference(case):
    name, params, layout, profile, values = case
    criterion = measured(name, params, layout, profile, values)
    np.testing.assert_array_equal(
        criterion.covered_, reference(name, params, layout, profile, values)
    )


@settings(max_examples=50, deadline=None)
@given(cases(), st.data())
def test_adding_inputs_never_uncovers(case, data):
    name, params, layout, profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    before = measured(name, params, layout, profile, values[:cut])
    after = measured(name, params, layout, profile, values[:cut], values[cut:])
    assert not (before.covered_ & ~after.covered_).any()
    assert before.coverage().covered <= after.coverage().covered
    assert before.coverage().total == after.coverage().total


@settings(max_examples=50, deadline=None)
@given(cases(), st.data())
def test_order_and_batching_do_not_matter(case, data):
    name, params, layout, profile, values = case
    order = data.draw(st.permutations(range(len(values))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    parts = np.split(values[list(order)], cuts)
    whole = measured(name, params, layout, profile, values)
    pieces = measured(name, params, layout, profile, *parts)
    np.testing.assert_array_equal(pieces.covered_, whole.covered_)
    assert pieces.coverage() == whole.coverage()
    assert pieces.inputs == whole.inputs == len(values)


@settings(max_examples=50, deadline=None)
@given(cases(), st.data())
def test_merge_of_two_halves_equals_the_whole(case, data):
    name, params, layout, profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    left = measured(name, params, layout, profile, values[:cut])
    right = measured(name, params, layout, profile, values[cut:])
    whole = measured(name, params, layout, profile, values)
    left.merge(right)
    np.testing.assert_array_equal(left.covered_, whole.covered_)
    assert left.coverage() == whole.coverage()
    assert left.per_layer() == whole.per_layer()
    assert left.inputs == whole.inputs


@settings(max_examples=50, deadline=None)
@given(cases())
def test_coverage_is_a_fraction_of_all_cells(case):
    name, params, layout, profile, values = case
    criterion = measured(name, params, layout, profile, values)
    coverage = criterion.coverage()
    assert coverage.total == layout.size * criterion.cells_per_neuron()
    assert 0 <= coverage.fraction <= 1
    per_layer = criterion.per_layer()
    assert list(per_layer) == list(layout.names)
    assert sum(c.covered for c in per_layer.values()) == coverage.covered
    assert sum(c.total for c in per_layer.values()) == coverage.total


@settings(max_examples=50, deadline=None)
@given(cases(), st.data())
def test_serialisation_round_trip(case, data):
    name, params, layout, profile, values = case
    cut = data.draw(st.integers(0, len(values)))
    original = measured(name, params, layout, profile, values[:cut])
    restored = Criterion.from_bytes(original.to_bytes(), profile)
    assert restored.header() == original.header()
    assert restored.inputs == original.inputs
    np.testing.assert_array_equal(restored.covered_, original.covered_)

    # The restored state carries on exactly like the original.
    rest = ActivationBatch(layout, values[cut:])
    restored.update(rest)
    original.update(rest)
    np.testing.assert_array_equal(restored.covered_, original.covered_)
    assert restored.to_bytes() == original.to_bytes()
