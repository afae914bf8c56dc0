"""Tracked models (pytest_dlcoverage.tracking), in process, with a tiny real Keras model:
recording, pass-through, accuracy and what `evaluate` returns."""

from __future__ import annotations

import re

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
    true_classes,
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
        tracked.predict(x[:5], suite="s", callbacks=None, shuffle=True)
    assert suite.inputs == 10 and suite.labelled == 10


# -- labels ------------------------------------------------------------------------------------


def suite_snapshot(tracker, suite="s"):
    """Returns what a suite holds: inputs, correct, labelled and each coverage."""
    record = tracker.measurements.models["tiny"].suites[suite]
    coverage = {c: state.coverage() for c, state in record.states.items()}
    return record.inputs, record.correct, record.labelled, coverage


@pytest.fixture
def recording(tmp_path, data, monkeypatch):
    """A recording tracked model that has fed suite "s" once, and a list that counts
    the forward passes of later calls."""
    x, y = data
    tracker = tracker_on(tmp_path)
    tracked = tracker.track(tiny_model(), name="tiny", train=(x, y))
    tracked.evaluate(x[:30], y[:30], suite="s")
    meter = tracked._recorder.meter
    passes = []
    observe = meter.observe

    def counted(*args, **kwargs):
        passes.append(1)
        return observe(*args, **kwargs)

    monkeypatch.setattr(meter, "observe", counted)
    return tracker, tracked, passes


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (10, r"integers in \[0, 3\).*min 10, max 12, 40 of 40 outside"),
        (-5, r"integers in \[0, 3\).*min -5, max -3"),
        (0.4, r"integers in \[0, 3\).*dtype float64.*min 0.4, max 2.4"),
    ],
)
def test_labels_that_are_no_class_indices_are_refused_before_the_forward_pass(
    recording, data, shift, message
):
    x, y = data
    tracker, tracked, passes = recording
    before = suite_snapshot(tracker)
    with pytest.raises(DLCoverageError, match=message):
        tracked.evaluate(x[40:80], y[40:80] + shift, suite="s")
    assert passes == [] and suite_snapshot(tracker) == before


def test_labels_of_another_form_are_refused_naming_what_was_received(recording, data):
    x, y = data
    tracker, tracked, passes = recording
    before = suite_snapshot(tracker)
    with pytest.raises(DLCoverageError, match=r"one-hot labels of shape \(n, 3\).*\(40, 5\)"):
        tracked.evaluate(x[40:80], np.eye(5)[y[40:80]], suite="s")
    with pytest.raises(DLCoverageError, match=r"dtype <U\d+ and shape \(40,\)"):
        tracked.evaluate(x[40:80], y[40:80].astype(str), suite="s")
    nan = y[40:80].astype(float)
    nan[3] = np.nan
    with pytest.raises(DLCoverageError, match="1 of 40 outside"):
        tracked.evaluate(x[40:80], nan, suite="s")
    assert passes == [] and suite_snapshot(tracker) == before
    # Integral floats and one-hot rows are class labels.
    tracked.evaluate(x[40:80], y[40:80].astype(float), suite="s")
    tracked.evaluate(x[80:], np.eye(3)[y[80:]], suite="s")
    assert suite_snapshot(tracker)[0] == 30 + 40 + 40


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # Tied rows: their argmax would count every input as class 0.
        (lambda y: np.full((40, 3), 0.5), r"40 of 40 rows .* row 0: \[0.5, 0.5, 0.5\] \(values"),
        # Label smoothing.
        (
            lambda y: np.where(np.eye(3)[y] == 1, 0.95, 0.025),
            r"min 0.025, max 0.95; 40 of 40 rows .* row 0: \[0.\d+, 0.\d+, 0.\d+\]",
        ),
        (lambda y: np.eye(3)[y] * [1, 1, 0], r"the first is row \d+: \[0, 0, 0\] \(0 ones\)"),
        (lambda y: np.eye(3)[y] + [[1, 0, 0]] * (y[:, None] != 0), r"\(2 ones\)"),
    ],
)
@pytest.mark.parametrize("compiled", [False, True])
def test_rows_that_are_not_one_hot_are_refused_naming_the_first(
    recording, data, rows, message, compiled
):
    x, y = data
    tracker, tracked, passes = recording
    if compiled:
        # The loss would refuse these labels too, with a message about the loss.
        tracked.model.compile(loss="sparse_categorical_crossentropy")
    before = suite_snapshot(tracker)
    with pytest.raises(
        DLCoverageError, match=r"expected one-hot labels of shape \(n, 3\)"
    ) as error:
        tracked.evaluate(x[40:80], rows(y[40:80]), suite="s")
    assert re.search(message, str(error.value)) and "refused" not in str(error.value)
    assert passes == [] and suite_snapshot(tracker) == before


def test_one_hot_rows_are_checked_with_coverage_off(data):
    x, y = data
    tracked = CoverageTracker(None, None, RunningTest()).track(tiny_model(), name="m")
    with pytest.raises(DLCoverageError, match=r"row 0: \[0.5, 0.5, 0.5\]"):
        tracked.evaluate(x, np.full((120, 3), 0.5))


def test_labels_inside_batches_are_checked_before_anything_is_recorded(recording, data):
    tf = pytest.importorskip("tensorflow")
    x, y = data
    tracker, tracked, passes = recording
    before = suite_snapshot(tracker)
    batches = tf.data.Dataset.from_tensor_slices((x[40:80], y[40:80] + 3)).batch(16)
    with pytest.raises(DLCoverageError, match=r"integers in \[0, 3\).*min 3, max 5"):
        tracked.evaluate(batches, suite="s")
    assert passes == [1] and suite_snapshot(tracker) == before


def test_an_error_of_keras_records_nothing(recording, data):
    x, y = data
    tracker, tracked, _ = recording
    before = suite_snapshot(tracker)
    # Sparse labels are class labels, but this loss wants one-hot labels: Keras refuses.
    tracked.model.compile(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="rank"):
        tracked.evaluate(x[40:80], y[40:80], suite="s")
    assert suite_snapshot(tracker) == before


def test_a_single_sigmoid_output_takes_labels_0_and_1(tmp_path, data):
    x, _ = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="relu", name="hidden"),
            keras.layers.Dense(1, activation="sigmoid", name="out"),
        ],
        name="binary",
    )
    labels = x[:, 0] > 0
    tracked = tracker_on(tmp_path).track(model, name="binary", train=(x, labels.astype(int)))
    expected = np.mean((model.predict(x, verbose=0)[:, 0] > 0.5) == labels)
    assert tracked.evaluate(x, labels, suite="s") == pytest.approx(expected)
    with pytest.raises(DLCoverageError, match=r"sparse labels, 0 or 1.*max 2"):
        tracked.evaluate(x, labels + 1, suite="s")


def test_true_classes_by_hand():
    assert true_classes(np.array([2, 0, 1]), 3).tolist() == [2, 0, 1]
    assert true_classes(np.array([[2.0], [0.0]]), 3).tolist() == [2, 0]
    assert true_classes(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), 3).tolist() == [1, 0]
    assert true_classes(np.eye(3, dtype=bool)[[2, 0]], 3).tolist() == [2, 0]
    assert true_classes(np.array([True, False]), 1).tolist() == [1, 0]
    with pytest.raises(DLCoverageError, match="received labels of dtype int64 and shape"):
        true_classes(np.int64(1), 3)


# -- Keras' arguments --------------------------------------------------------------------------


def test_without_recording_every_argument_goes_to_keras(data):
    x, y = data
    model = tiny_model()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    tracked = CoverageTracker(None, None, RunningTest()).track(model, name="m")
    weights = np.linspace(0.0, 1.0, len(y))
    # The same Keras call, with the same arguments, gives the same numbers.
    assert tracked.evaluate(x, y, sample_weight=weights, verbose=0) == model.evaluate(
        x, y, sample_weight=weights, verbose=0
    )
    assert tracked.evaluate(
        x, y, batch_size=16, sample_weight=None, verbose=0, return_dict=True
    ) == model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_array_equal(
        tracked.predict(x, batch_size=4, verbose=0, steps=None, callbacks=None),
        model.predict(x, batch_size=4, verbose=0),
    )
    # Keras cannot evaluate an uncompiled model: the wrapper gives its accuracy, from
    # which a weight cannot be honoured.
    uncompiled = CoverageTracker(None, None, RunningTest()).track(tiny_model(), name="u")
    expected = np.mean(uncompiled.model.predict(x, verbose=0).argmax(axis=1) == y)
    assert uncompiled.evaluate(x, y, sample_weight=None, verbose=0) == pytest.approx(expected)
    with pytest.raises(DLCoverageError, match="sample_weight"):
        uncompiled.evaluate(x, y, sample_weight=weights)


def test_while_recording_keras_arguments_are_honoured_or_refused_by_name(tmp_path, data):
    x, y = data
    tracker = tracker_on(tmp_path)
    model = tiny_model()
    tracked = tracker.track(model, name="tiny", train=(x, y))
    predictions = tracked.predict(x[:10], batch_size=4, verbose=0, steps=None, callbacks=[])
    np.testing.assert_allclose(predictions, model.predict(x[:10], verbose=0), rtol=1e-5)
    assert tracked.evaluate(
        x[:10], y[:10], verbose=0, steps=None, callbacks=None, sample_weight=None, return_dict=True
    ).keys() == {"accuracy"}
    with pytest.raises(DLCoverageError, match=r"sample_weight=None; received ndarray of shape"):
        tracked.evaluate(x[:10], y[:10], sample_weight=np.ones(10))
    with pytest.raises(DLCoverageError, match="callbacks=None; received 1 callbacks"):
        tracked.predict(x[:10], callbacks=[keras.callbacks.Callback()])
    with pytest.raises(DLCoverageError, match="received also shuffle"):
        tracked.evaluate(x[:10], y[:10], shuffle=False)
    assert tracker.measurements.models["tiny"].suites["outside tests"].inputs == 20


def test_the_arguments_before_suite_are_keras_own_in_its_order():
    import inspect

    def positional(method):
        parameters = list(inspect.signature(method).parameters.values())[1:]  # no self
        return [(p.name, p.default) for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]

    for method in ("predict", "evaluate"):
        ours = inspect.signature(getattr(TrackedModel, method)).parameters["suite"]
        assert ours.kind is ours.KEYWORD_ONLY
        assert positional(getattr(TrackedModel, method)) == positional(getattr(keras.Model, method))


def test_keras_positional_arguments_are_taken_with_coverage_off_and_on(tmp_path, data):
    x, y = data
    model = tiny_model()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    off = CoverageTracker(None, None, RunningTest()).track(model, name="m")
    # x, batch_size, verbose, steps
    np.testing.assert_array_equal(off.predict(x, 32, 0, 2), model.predict(x, 32, 0, 2))
    # x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict
    assert off.evaluate(x, y, 16, 0, None, None, None, True) == model.evaluate(
        x, y, 16, 0, return_dict=True
    )

    tracker = tracker_on(tmp_path)
    tracked = tracker.track(model, name="tiny", train=(x, y))
    assert tracked.predict(x, 16, 0, 2, suite="p").shape == (32, 3)  # 2 steps of 16
    result = tracked.evaluate(x[:10], y[:10], 4, 0, None, None, None, True, suite="e")
    assert result.keys() == {"loss", "accuracy"}
    with pytest.raises(DLCoverageError, match="sample_weight=None; received ndarray"):
        tracked.evaluate(x[:10], y[:10], 4, 0, np.ones(10), suite="e")
    suites = tracker.measurements.models["tiny"].suites
    assert (suites["p"].inputs, suites["e"].inputs, suites["e"].labelled) == (32, 10, 10)


def test_steps_read_what_keras_reads(tmp_path, data):
    tf = pytest.importorskip("tensorflow")
    x, y = data
    model = tiny_model()
    tracked = tracker_on(tmp_path).track(model, name="tiny", train=(x, y))
    # Keras itself is the reference for arrays and datasets.
    for args in ({"batch_size": 10, "steps": 3}, {"steps": 3}):
        expected = model.predict(x, verbose=0, **args).shape
        assert tracked.predict(x, suite="a", **args).shape == expected
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(16)
    expected = model.predict(dataset, steps=2, verbose=0).shape
    assert tracked.predict(dataset, steps=2, suite="d").shape == expected == (32, 3)
    # An iterator of batches: the first two batches, as Keras reads from a generator.
    batches = iter([x[:10], x[10:20], x[20:30]])
    assert tracked.predict(batches, steps=2, suite="g").shape == (20, 3)
    suites = tracked._recorder.measurements.models["tiny"].suites
    assert (suites["a"].inputs, suites["d"].inputs, suites["g"].inputs) == (30 + 120, 32, 20)
    with pytest.raises(DLCoverageError, match="steps as a positive integer"):
        tracked.predict(x, steps=0)


def test_an_empty_evaluate_is_a_clear_error_and_records_nothing(recording, data):
    x, y = data
    tracker, tracked, _ = recording
    before = suite_snapshot(tracker)
    with pytest.raises(DLCoverageError, match="expected at least one input.*received none"):
        tracked.evaluate(x[:0], y[:0], suite="s")
    assert suite_snapshot(tracker) == before


def test_a_keras_loss_refusing_the_labels_is_a_clear_error(recording, data):
    x, y = data
    tracker, tracked, _ = recording
    tracked.model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(DLCoverageError, match=r"refused labels of shape \(40, 3\)"):
        tracked.evaluate(x[40:80], np.eye(3)[y[40:80]], suite="s")


# -- names: suite, model name, baseline -------------------------------------------------


@pytest.mark.parametrize("suite", [123, "", "   ", ("a",), b"text"])
def test_a_suite_that_is_no_name_is_refused_and_records_nothing(recording, data, suite):
    from pytest_dlcoverage.session import build_report

    x, y = data
    tracker, tracked, passes = recording
    tracked.predict(x[:10], suite="text")
    before = suite_snapshot(tracker), suite_snapshot(tracker, "text")
    passes.clear()
    message = r"expected suite as a non-blank string, or None .*received suite=" + re.escape(
        repr(suite)
    )
    with pytest.raises(DLCoverageError, match=message):
        tracked.predict(x[:10], suite=suite)
    with pytest.raises(DLCoverageError, match=message):
        tracked.evaluate(x[:10], y[:10], suite=suite)
    assert passes == [] and (suite_snapshot(tracker), suite_snapshot(tracker, "text")) == before
    assert set(tracker.measurements.models["tiny"].suites) == {"s", "text"}
    # The report, whose suites are sorted by name, can still be built.
    report = build_report(tracker.measurements, ("nc",))
    assert [s.name for s in report.models[0].suites] == ["s", "text"]


def test_a_suite_that_is_no_name_is_refused_with_coverage_off_too(data):
    x, y = data
    tracked = CoverageTracker(None, None, RunningTest()).track(tiny_model(), name="m")
    with pytest.raises(DLCoverageError, match=r"received suite=123 of type int"):
        tracked.predict(x, suite=123)
    with pytest.raises(DLCoverageError, match=r"received suite=''"):
        tracked.evaluate(x, y, suite="")


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": 5}, r"expected name as a non-blank string, or None for the model's own "),
        ({"name": ""}, r"expected name as a non-blank string.*received name=''$"),
        ({"name": " "}, r"received name=' '$"),
        ({"baseline": 5}, r"expected baseline as a non-blank string, or None for no baseline"),
        ({"baseline": ""}, r"received baseline=''$"),
        ({"baseline": ["base"]}, r"received baseline=\['base'\] of type list$"),
    ],
)
def test_track_refuses_a_name_or_baseline_that_is_no_name(
    tmp_path, data, enabled, arguments, message
):
    x, y = data
    tracker = tracker_on(tmp_path) if enabled else CoverageTracker(None, None, RunningTest())
    with pytest.raises(DLCoverageError, match=r"^dl_coverage.track: .*" + message):
        tracker.track(tiny_model(), train=(x, y), **arguments)
    if enabled:
        assert tracker.measurements.models == {}
