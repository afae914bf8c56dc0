"""Exact coverage numbers, neuron layouts, streaming range statistics and the saved
training profile."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_dlcoverage.errors import DLCoverageError
from pytest_dlcoverage.fileio import atomic_write
from pytest_dlcoverage.layout import ActivationBatch, NeuronLayout
from pytest_dlcoverage.profile import PROFILE_FORMAT, RangeStats, TrainingProfile
from pytest_dlcoverage.results import Coverage

# -- Coverage -------------------------------------------------------------------------


def test_coverage_is_an_exact_ratio():
    third = Coverage(1, 3)
    assert third.exact == Fraction(1, 3)
    assert third.fraction == 1 / 3
    assert Coverage(2, 6).exact == third.exact
    assert Coverage(2, 6) != third  # the counts themselves are kept

    assert Coverage(0, 0).exact is None
    assert Coverage(0, 0).fraction is None
    assert Coverage(0, 0).percent_text() == "n/a"


@pytest.mark.parametrize(
    ("covered", "total", "digits", "text"),
    [
        (0, 7, 2, "0"),
        (7, 7, 2, "100"),
        (1, 3, 2, "33.33"),
        (2, 3, 2, "66.67"),
        (1, 3, 0, "33"),
        (1, 10_000, 2, "0.01"),
        (1, 1_000_000, 2, "<0.01"),
        (999_999, 1_000_000, 2, ">99.99"),
        (1, 1000, 0, "<1"),
        (995, 1000, 0, ">99"),
        (99, 100, 0, "99"),
        (1, 300_000, 3, "<0.001"),
        (1, 30_000, 3, "0.003"),
    ],
)
def test_percent_text(covered, total, digits, text):
    assert Coverage(covered, total).percent_text(digits) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 10**9).flatmap(lambda t: st.tuples(st.integers(1, t - 1), st.just(t))))
def test_percent_text_shows_neither_0_nor_100_for_a_partial_coverage(counts):
    covered, total = counts
    for digits in (0, 1, 2, 3):
        text = Coverage(covered, total).percent_text(digits)
        shown = float(text.lstrip("<>"))
        assert 0 < shown < 100, text
        if text[0] not in "<>":
            assert abs(shown - 100 * covered / total) <= 0.5 * 10.0**-digits + 1e-9


@pytest.mark.parametrize(("covered", "total"), [(-1, 3), (4, 3), (0, -1)])
def test_coverage_refuses_impossible_counts(covered, total):
    with pytest.raises(ValueError, match=f"covered={covered}, total={total}"):
        Coverage(covered, total)


def test_coverage_sum_and_text():
    assert Coverage(1, 2) + Coverage(3, 4) == Coverage(4, 6)
    assert str(Coverage(1, 3)) == "1/3 (33.33%)"


def test_an_undefined_coverage_reads_n_a_without_a_percent_sign():
    assert str(Coverage(0, 0)) == "0/0 (n/a)"
    assert str(Coverage(0, 5)) == "0/5 (0%)"


# -- NeuronLayout and ActivationBatch -------------------------------------------------


def test_layout_maps_layers_to_columns():
    layout = NeuronLayout(("conv", "dense", "out"), (3, 1, 2))
    assert layout.size == 6
    assert layout.offsets == (0, 3, 4)
    assert layout.slice("dense") == slice(3, 4)
    assert layout.slices() == {"conv": slice(0, 3), "dense": slice(3, 4), "out": slice(4, 6)}
    assert layout.layer_of_neuron().tolist() == [0, 0, 0, 1, 2, 2]
    with pytest.raises(KeyError, match=r"'pool' is not in this layout.*'conv', 'dense', 'out'"):
        layout.slice("pool")


def test_layout_json_round_trip_and_equality():
    layout = NeuronLayout(["a", "b"], [2, np.int64(5)])
    assert layout.names == ("a", "b")
    assert layout.sizes == (2, 5)
    assert NeuronLayout.from_json(layout.to_json()) == layout
    assert layout.to_json() == [["a", 2], ["b", 5]]
    assert layout != NeuronLayout(("a", "b"), (2, 4))
    assert layout != NeuronLayout(("b", "a"), (2, 5))


@pytest.mark.parametrize(
    ("names", "sizes", "words"),
    [
        (("a", "b"), (1,), "2 names and 1 sizes"),
        (("a", "a"), (1, 2), "unique"),
        (("a", "b"), (1, 0), "at least one neuron"),
    ],
)
def test_layout_refuses_invalid_layers(names, sizes, words):
    with pytest.raises(ValueError, match=words):
        NeuronLayout(names, sizes)


def test_activation_batch_gives_layers_and_extras():
    layout = NeuronLayout(("a", "b"), (2, 1))
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    extra = np.ones((2, 4), dtype=np.float32)
    batch = ActivationBatch(layout, values, {"subject": extra})
    assert len(batch) == 2
    np.testing.assert_array_equal(batch.layer("a"), [[0, 1], [3, 4]])
    np.testing.assert_array_equal(batch.layer("b"), [[2], [5]])
    assert batch.layer("subject") is extra


# -- RangeStats -----------------------------------------------------------------------


@st.composite
def activations_and_cuts(draw):
    """Returns a float32 array (n, neurons) and sorted cut points splitting its rows."""
    rows = draw(st.integers(1, 40))
    neurons = draw(st.integers(1, 6))
    elements = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)
    values = draw(hnp.arrays(np.float32, (rows, neurons), elements=elements))
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=6)))
    return values, cuts


def assert_stats_equal_numpy(stats: RangeStats, values: np.ndarray) -> None:
    whole = values.astype(np.float64)
    assert stats.count == len(values)
    np.testing.assert_array_equal(stats.low, whole.min(axis=0))
    np.testing.assert_array_equal(stats.high, whole.max(axis=0))
    np.testing.assert_allclose(stats.mean, whole.mean(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.std, whole.std(axis=0), rtol=1e-9, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(activations_and_cuts())
def test_range_stats_streamed_in_any_batches_equal_numpy_on_the_whole(case):
    values, cuts = case
    stats = RangeStats.empty(values.shape[1])
    for part in np.split(values, cuts):
        stats.add(part)  # empty parts included: they must change nothing
    assert_stats_equal_numpy(stats, values)


@settings(max_examples=50, deadline=None)
@given(activations_and_cuts())
def test_range_stats_merged_from_parts_equal_numpy_on_the_whole(case):
    values, cuts = case
    merged = RangeStats.empty(values.shape[1])
    for part in np.split(values, cuts):
        partial = RangeStats.empty(values.shape[1])
        partial.add(part)
        merged.merge(partial)
    assert_stats_equal_numpy(merged, values)


def test_empty_range_stats():
    stats = RangeStats.empty(3)
    assert stats.count == 0
    assert np.isposinf(stats.low).all() and np.isneginf(stats.high).all()
    assert np.isnan(stats.std).all()


# -- TrainingProfile ------------------------------------------------------------------


def make_profile() -> TrainingProfile:
    layout = NeuronLayout(("h1", "h2"), (2, 3))
    ranges = RangeStats.empty(layout.size)
    ranges.add(np.random.default_rng(0).normal(size=(20, layout.size)).astype(np.float32))
    return TrainingProfile("abc123", layout, ranges, None, {"batch_size": 128, "seed": 0})


def assert_profiles_equal(loaded: TrainingProfile, profile: TrainingProfile) -> None:
    assert loaded.fingerprint == profile.fingerprint
    assert loaded.layout == profile.layout
    assert loaded.settings == profile.settings
    assert loaded.importance is None
    assert loaded.ranges.count == profile.ranges.count
    for name in ("low", "high", "mean", "m2"):
        np.testing.assert_array_equal(getattr(loaded.ranges, name), getattr(profile.ranges, name))


def test_profile_save_and_load_round_trip(tmp_path):
    profile = make_profile()
    path = tmp_path / "cache" / "profile.npz"
    profile.save(path)
    assert_profiles_equal(TrainingProfile.load(path), profile)
    np.testing.assert_array_equal(TrainingProfile.load(path).low, profile.low)

    # Saving again replaces the file and leaves no temporary file behind.
    profile.fingerprint = "def456"
    profile.save(path)
    assert TrainingProfile.load(path).fingerprint == "def456"
    assert [p.name for p in path.parent.iterdir()] == ["profile.npz"]


def test_a_failed_save_keeps_the_previous_profile(tmp_path, monkeypatch):
    profile = make_profile()
    path = tmp_path / "profile.npz"
    profile.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"partial data")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        profile.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["profile.npz"]


def test_atomic_write_accepts_bytes_and_text(tmp_path):
    path = tmp_path / "new" / "file.txt"
    atomic_write(path, "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_corrupt_or_missing_profiles_raise(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a profile")
    with pytest.raises(DLCoverageError, match="cannot read training profile .*garbage.npz"):
        TrainingProfile.load(garbage)

    truncated = tmp_path / "truncated.npz"
    make_profile().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DLCoverageError, match="cannot read training profile"):
        TrainingProfile.load(truncated)

    with pytest.raises(DLCoverageError, match="cannot read training profile .*missing.npz"):
        TrainingProfile.load(tmp_path / "missing.npz")


def test_profile_of_another_format_raises(tmp_path):
    path = tmp_path / "old.npz"
    make_profile().save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = bytes(arrays["meta"]).replace(
        f'"format": {PROFILE_FORMAT}'.encode(), f'"format": {PROFILE_FORMAT + 1}'.encode()
    )
    arrays["meta"] = np.frombuffer(meta, dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(DLCoverageError, match=f"format {PROFILE_FORMAT + 1}; expected"):
        TrainingProfile.load(path)
