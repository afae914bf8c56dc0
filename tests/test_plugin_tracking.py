"""Tracked models (pytest_dlcoverage.tracking), in process, with a tiny real Keras model:
recording, pass-through, accuracy and what `evaluate` returns."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_dlcoverage.errors import DLCoverageError
from pytest_dlcoverage.options import resolve_settings
from pytest_dlcoverage.session import Measurements
from pytest_dlcoverage.tracking import (
    CoverageTracker,
    RunningTest,
    TrackedModel,
    count_correct,
    evaluation_result,
)

keras = pytest.importorskip("keras")


def tiny_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    # Named, because Keras numbers unnamed models and the number enters weight paths.
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="tiny",
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = rng.integers(0, 3, size=120)
    return x, y


def tracker_on(tmp_path, context=None, **cli):
    cli = {"criteria": "nc,kmnc,tknc", "kmnc_k": "10", **cli}
    settings = resolve_settings(
        True, cli, {}, cli_base=tmp_path, ini_base=tmp_path, rootdir=tmp_path
    )
    return CoverageTracker(settings, Measurements(), context or RunningTest())


# -- accuracy --------------------------------------------------------------------------------


def test_count_correct_label_forms():
    predictions = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])
    assert count_correct(predictions, np.array([1, 0, 0])) == (2, 3)
    assert count_correct(predictions, np.array([[1], [0], [2]])) == (3, 3)
    assert count_correct(predictions, np.eye(3)[[1, 1, 2]]) == (2, 3)
    sigmoid = np.array([[0.9], [0.2], [0.6]])
    assert count_correct(sigmoid, np.array([1, 0, 0])) == (2, 3)
    with pytest.raises(DLCoverageError, match="one label per input"):
        count_correct(predictions, np.array([1, 0]))
    with pytest.raises(DLCoverageError, match="one-hot labels of shape"):
        count_correct(predictions, np.zeros((3, 5)))


def test_evaluation_result_matches_keras_evaluate(data):
    x, y = data
    model = tiny_model()
    predictions = model.predict(x, verbose=0)

    # Uncompiled: Keras cannot evaluate; the result is the accuracy, counted by hand here.
    expected = float(np.mean(predictions.argmax(axis=1) == y))
    assert evaluation_result(model, predictions, y, return_dict=False) == expected
    assert evaluation_result(model, predictions, y, return_dict=True) == {"accuracy": expected}

    model.compile(loss="sparse_categorical_crossentropy")
    assert evaluation_result(model, predictions, y, False) == pytest.approx(
        model.evaluate(x, y, verbose=0), rel=1e-5
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours = evaluation_result(model, predictions, y, False)
    keras_values = model.evaluate(x, y, verbose=0)
    assert len(ours) == len(keras_values) == 2
    assert ours == pytest.approx(keras_values, rel=1e-5)
    ours = evaluation_result(model, predictions, y, True)
    keras_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert ours.keys() == keras_dict.keys()
    assert all(ours[k] == pytest.approx(keras_dict[k], rel=1e-5) for k in ours)


# -- coverage off: pass-through -----------------------------------------------------------------


def test_off_tracker_only_forwards(data):
    x, y = data
    model = tiny_model()
    tracked = CoverageTracker(None, None, RunningTest()).track(model, name="m")
    assert isinstance(tracked, TrackedModel) and tracked.model is model
    np.testing.assert_array_equal(
        tracked.predict(x, suite="ignored", verbose=0), model.predict(x, verbose=0)
    )
    expected = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))
    assert tracked.evaluate(x, y, suite="ignored") == pytest.approx(expected)
    assert tracked.layers == model.layers and tracked.name == model.name
    np.testing.assert_allclose(np.asarray(tracked(x[:2])), np.asarray(model(x[:2])))


# -- coverage on -----------------------------------------------------------------------------------


def test_recorded_coverage_equals_the_meter_alone(tmp_path, data):
    from pytest_dlcoverage.engine import CoverageMeter

    x, y = data
    context = RunningTest(nodeid="tests/test_a.py::test_one")
    tracker = tracker_on(tmp_path, context)
    model = tiny_model()
    tracked = tracker.track(model, name="tiny", train=(x, y))

    predictions = tracked.predict(x[:40])
    tracked.evaluate(x[40:80], y[40:80], suite="original")
    tracked.evaluate(x[80:], y[80:], suite="original")
    np.testing.assert_allclose(predictions, model.predict(x[:40], verbose=0), rtol=1e-5)

    record = tracker.measurements.models["tiny"]
    assert list(record.suites) == ["tests/test_a.py::test_one", "original"]
    original = record.suites["original"]
    assert original.inputs == 80 and original.labelled == 80
    truth = model.predict(x[40:], verbose=0).argmax(axis=1) == y[40:]
    assert original.correct == int(truth.sum())

    meter = CoverageMeter(model, criteria=("nc", "kmnc", "tknc"), params={"kmnc": {"k": 10}}).fit(
        x, y
    )
    alone = meter.measure(x[40:])
    assert {c: s.coverage() for c, s in original.states.items()} == alone
    # The profile was cached on disk under the rootdir.
    assert list((tmp_path / ".dlcoverage").glob("tiny-*.npz"))


def test_excluded_tests_record_nothing(tmp_path, data):
    x, y = data
    context = RunningTest(nodeid="t::excluded", excluded=True)
    tracker = tracker_on(tmp_path, context)
    tracked = tracker.track(tiny_model(), name="tiny", train=(x, y))
    tracked.predict(x[:10], verbose=0)
    tracked.evaluate(x[:10], y[:10], suite="s")
    assert tracker.measurements.models["tiny"].suites == {}


def test_tracking_again(tmp_path, data):
    x, y = data
    tracker = tracker_on(tmp_path)
    model = tiny_model()
    first = tracker.track(model, name="tiny", train=(x, y))
    assert tracker.track(model, name="tiny", train=(x, y)) is first
    # Another model object with the same weights and data is the same model.
    twin = tiny_model()
    assert tracker.track(twin, name="tiny", train=(x, y)).model is twin
    with pytest.raises(DLCoverageError, match="tracked twice with different models"):
        tracker.track(tiny_model(seed=1), name="tiny", train=(x, y))
    with pytest.raises(DLCoverageError, match="baseline"):
        tracker.track(model, name="tiny", train=(x, y), baseline="other")
    with pytest.raises(DLCoverageError, match="needs the training data"):
        tracker.track(tiny_model(seed=2), name="other")


def test_a_failed_call_leaves_the_suite_unchanged(tmp_path, data):
    x, y = data
    tracker = tracker_on(tmp_path)
    tracked = tracker.track(tiny_model(), name="tiny", train=(x, y))
    tracked.evaluate(x[:10], y[:10], suite="s")
    with pytest.raises(DLCoverageError, match="one-hot labels"):
        tracked.evaluate(x[10:20], np.zeros((10, 7)), suite="s")
    suite = tracker.measurements.models["tiny"].suites["s"]
    assert suite.inputs == 10 and suite.labelled == 10
    with pytest.raises(DLCoverageError, match="needs labels"):
        tracked.evaluate(x[:5], suite="s")
    with pytest.raises(DLCoverageError, match="received also"):
        tracked.predict(x[:5], callbacks=[])
