"""Tracked models: what the `dl_coverage` fixture hands to tests.

`CoverageTracker.track(model, ...)` returns a `TrackedModel`, a stand-in for the Keras
model that records the coverage of every input given to `predict` or `evaluate`
(and, for `evaluate`, the accuracy) into the session's `Measurements`, under a suite
name. Everything else (`__call__`, attributes) goes to the model unchanged.

When coverage is off the tracker still returns a `TrackedModel`, which then only
forwards: the same test suite runs with and without `--dl-coverage`.

This module imports neither pytest nor, until a model is tracked with coverage on,
TensorFlow.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DLCoverageError
from .inputs import true_classes

if TYPE_CHECKING:
    from .criteria.base import Criterion
    from .engine import CoverageMeter
    from .options import Settings
    from .session import Measurements


@dataclass
class RunningTest:
    """Which test is running, as the plugin tells the tracker.

    Attributes:
        nodeid: the running test's id (the default suite name), or `None` outside tests.
        excluded: the running test is marked `no_dl_coverage`.
    """

    nodeid: str | None = None
    excluded: bool = False


def count_correct(predictions: Any, labels: Any) -> tuple[int, int]:
    """Returns (correctly classified, labelled) inputs.

    The predicted class is the argmax of the predictions, or for a single output
    column (a sigmoid) whether it exceeds 0.5. Labels are checked by `true_classes`.

    Args:
        predictions: model outputs, shape `(n, classes)` or `(n, 1)`.
        labels: the true classes, sparse `(n,)` or one-hot `(n, classes)`.

    Raises:
        DLCoverageError: not one label per input, or labels that `true_classes` refuses.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    n = len(predictions)
    if labels.ndim == 0 or len(labels) != n:
        received = "a scalar" if labels.ndim == 0 else f"{len(labels)} labels"
        raise DLCoverageError(
            f"expected one label per input; received {n} predictions and {received}"
        )
    outputs = predictions.reshape(n, -1)
    truth = true_classes(labels, outputs.shape[1])
    if outputs.shape[1] == 1:
        predicted = (outputs[:, 0] > 0.5).astype(np.int64)
    else:
        predicted = outputs.argmax(axis=1)
    return int(np.count_nonzero(predicted == truth)), n


def output_columns(model: Any) -> int | None:
    """Returns the number of output values per input of a Keras model, or `None` when
    the model does not declare a fully known output shape."""
    try:
        shape = tuple(model.outputs[0].shape)[1:]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if any(dim is None for dim in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def _compiled(model: Any) -> bool:
    return bool(getattr(model, "compiled", False)) and getattr(model, "loss", None) is not None


def evaluation_result(
    model: Any, predictions: np.ndarray, labels: np.ndarray, return_dict: bool
) -> Any:
    """Returns what `model.evaluate` would return, computed from predictions already made.

    A compiled model gets its compiled loss and metrics (the loss first, as Keras orders
    them; a single value when there are no metrics), computed over all inputs at once;
    Keras averages per-batch values instead, which agrees up to float rounding. An
    uncompiled model, for which Keras' `evaluate` would fail, gets its accuracy.

    Args:
        model: the Keras model that made `predictions`.
        predictions: shape `(n, ...)`.
        labels: the true labels, shape `(n,)` or `(n, classes)`.
        return_dict: return a dict of named values, as `evaluate(return_dict=True)`.
    """
    if not _compiled(model):
        correct, labelled = count_correct(predictions, labels)
        accuracy = correct / labelled if labelled else float("nan")
        return {"accuracy": accuracy} if return_dict else accuracy
    try:
        loss = float(model.compute_loss(y=labels, y_pred=predictions, training=False))
        model.reset_metrics()
        logs = {
            name: float(value)
            for name, value in model.compute_metrics(None, labels, predictions, None).items()
        }
    except Exception as error:  # Keras and TensorFlow raise several types for bad labels
        raise DLCoverageError(
            f"the compiled loss or metrics of model {model.name!r} refused labels of shape "
            f"{np.shape(labels)} and dtype {np.asarray(labels).dtype} (for example one-hot "
            f"labels for a sparse loss): {type(error).__name__}: {str(error)[:300]}"
        ) from error
    logs["loss"] = loss
    if return_dict:
        return logs
    values = [loss] + [value for name, value in logs.items() if name != "loss"]
    return values[0] if len(values) == 1 else values


class TrackedModel:
    """A Keras model whose `predict` and `evaluate` record coverage.

    `predict(x, suite=...)` records the coverage of `x`; `evaluate(x, y, suite=...)`
    records coverage and accuracy. Both make one forward pass. Calling the model
    (`tracked(x)`) and every attribute go to the Keras model unchanged and record
    nothing: direct calls serve gradient computations (adversarial attacks, relevance)
    whose inputs are not test inputs.

    When nothing is recorded (coverage off, or a `no_dl_coverage` test), `predict` and
    the `evaluate` of a compiled model hand every argument to Keras unchanged. An
    uncompiled model, which Keras cannot evaluate, gets its accuracy either way.

    Args:
        model: the Keras model.
        name: the model's name in the reports.
        recorder: where coverage goes; `None` when coverage is off.
    """

    def __init__(self, model: Any, name: str, recorder: _Recorder | None) -> None:
        self._model = model
        self._name = name
        self._recorder = recorder

    @property
    def model(self) -> Any:
        """Returns the wrapped Keras model."""
        return self._model

    @property
    def coverage_name(self) -> str:
        """Returns the model's name in the coverage reports."""
        return self._name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._model, attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model(*args, **kwargs)

    def __repr__(self) -> str:
        state = "recording" if self._recorder is not None else "not recording"
        return f"<TrackedModel {self._name!r} ({state}) of {self._model!r}>"

    def _recording(self) -> _Recorder | None:
        """Returns the recorder when this call's inputs are to be recorded."""
        recorder = self._recorder
        return recorder if recorder is not None and recorder.recording else None

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: str | int = "auto",
        steps: int | None = None,
        callbacks: list | None = None,
        *,
        suite: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the model's predictions for `x` and records their coverage.

        The arguments before `suite` are those of `keras.Model.predict`, in its order.

        Args:
            x: inputs: an array of shape `(n, ...)`, a `tf.data.Dataset` or an iterable
                of batches.
            batch_size: inputs per forward pass.
            verbose: Keras' progress display; ignored while recording.
            steps: only the first `steps` batches are read, as Keras does.
            callbacks: Keras callbacks; must be empty while recording.
            suite: the suite the inputs belong to, a non-blank string; by default the
                running test's id.
            **kwargs: handed to Keras when not recording; an error while recording.

        Returns:
            The predictions, shape `(n, ...)`, as `keras.Model.predict` returns them.

        Raises:
            DLCoverageError: `suite` is not a non-blank string or `None`; while
                recording, an argument it cannot honour.
        """
        where = f"predict of tracked model {self._name!r}"
        _check_name_argument(suite, "suite", where, "the running test's id")
        recorder = self._recording()
        if recorder is None:
            return self._model.predict(
                x,
                batch_size=batch_size,
                verbose=verbose,
                steps=steps,
                callbacks=callbacks,
                **kwargs,
            )

        x, _ = _keras_arguments(
            where, x, None, batch_size=batch_size, steps=steps, callbacks=callbacks, unknown=kwargs
        )
        predictions, _, states = recorder.observe(x, None, batch_size)
        recorder.record(suite, states, len(predictions))
        return predictions

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: str | int = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: list | None = None,
        return_dict: bool = False,
        *,
        suite: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Evaluates the model on `x` with one forward pass, recording coverage and
        accuracy.

        Nothing is recorded unless the whole call succeeds: labels are checked before
        the forward pass where they are given apart from `x`, and coverage and accuracy
        are added to the suite only once the result is computed. The arguments before
        `suite` are those of `keras.Model.evaluate`, in its order; when a compiled model
        is not recording, all of them go to Keras unchecked.

        Args:
            x: inputs: an array of shape `(n, ...)`, or a dataset or iterable of
                `(inputs, labels)` batches.
            y: labels for an array `x`: sparse `(n,)` class indices or one-hot
                `(n, classes)` (see `true_classes`).
            batch_size: inputs per forward pass.
            verbose: Keras' progress display; ignored.
            sample_weight: must be `None`: every input counts once.
            steps: only the first `steps` batches are read, as Keras does.
            callbacks: Keras callbacks; must be empty.
            return_dict: return named values, as Keras does.
            suite: the suite the inputs belong to, a non-blank string; by default the
                running test's id.
            **kwargs: handed to Keras by a compiled model that is not recording; an
                error otherwise.

        Returns:
            For a compiled model, its loss and metrics as `keras.Model.evaluate` returns
            them (computed from the same predictions while recording); for an
            uncompiled one, the accuracy. See `evaluation_result`.

        Raises:
            DLCoverageError: `suite` is not a non-blank string or `None`, labels missing
                or not class labels of this model, or an argument it cannot honour.
        """
        where = f"evaluate of tracked model {self._name!r}"
        _check_name_argument(suite, "suite", where, "the running test's id")
        recorder = self._recording()
        if recorder is None and _compiled(self._model):
            # Nothing to record: Keras evaluates the model itself, as the test asked.
            return self._model.evaluate(
                x,
                y,
                batch_size=batch_size,
                verbose=verbose,
                sample_weight=sample_weight,
                steps=steps,
                callbacks=callbacks,
                return_dict=return_dict,
                **kwargs,
            )

        x, y = _keras_arguments(
            where,
            x,
            y,
            batch_size=batch_size,
            steps=steps,
            callbacks=callbacks,
            sample_weight=sample_weight,
            unknown=kwargs,
        )
        classes = output_columns(self._model)
        if y is not None and classes is not None:
            # Labels given apart from the inputs fail here, before a long forward pass.
            true_classes(y, classes)
        if recorder is None:
            predictions, labels = _forward(self._model, x, y, batch_size)
            states = {}
        else:
            predictions, labels, states = recorder.observe(x, y, batch_size)
        labels = _required(labels, self._name)
        correct, labelled = count_correct(predictions, labels)
        result = evaluation_result(self._model, predictions, labels, return_dict)
        if recorder is not None:
            recorder.record(suite, states, len(predictions), correct, labelled)
        return result


def _check_name_argument(value: Any, argument: str, where: str, default: str) -> None:
    """Raises `DLCoverageError` unless `value`, the name given as `argument`, is `None`
    (for `default`) or a string that is not blank: names are report keys, sorted and
    shown, so a number or a blank would break the report or show nothing."""
    if value is None or (isinstance(value, str) and value.strip()):
        return
    kind = "" if isinstance(value, str) else f" of type {type(value).__name__}"
    raise DLCoverageError(
        f"{where}: expected {argument} as a non-blank string, or None for {default}; "
        f"received {argument}={value!r}{kind}"
    )


def _required(labels: Any, name: str) -> Any:
    """Returns `labels`, which `evaluate` of model `name` cannot do without."""
    if labels is None:
        raise DLCoverageError(
            f"evaluate of model {name!r} needs labels: give y for an array x, or "
            "(inputs, labels) batches; received none"
        )
    return labels


def _keras_arguments(
    where: str,
    x: Any,
    y: Any,
    *,
    batch_size: int | None,
    steps: Any,
    callbacks: list | None,
    sample_weight: Any = None,
    unknown: dict[str, Any],
) -> tuple[Any, Any]:
    """Checks the arguments of `keras.Model.predict` or `evaluate` that a tracked model's
    own forward pass received, and applies `steps`. (`verbose` needs no check: there is
    no progress bar to show or hide.)

    Args:
        where: which call of which model, for messages.
        x, y: the inputs and labels.
        batch_size: inputs per batch, as given.
        steps: the number of batches to read, or `None` for all.
        callbacks: must be empty.
        sample_weight: must be `None`.
        unknown: keyword arguments neither Keras' method nor the tracked model names.

    Returns:
        `x` and `y`, cut to the first `steps` batches when `steps` is given.

    Raises:
        DLCoverageError: an argument that cannot be honoured, or that Keras does not know.
    """
    if callbacks:
        raise DLCoverageError(
            f"{where} makes its own forward pass and runs no Keras callbacks; expected "
            f"callbacks=None; received {len(callbacks)} callbacks"
        )
    if sample_weight is not None:
        raise DLCoverageError(
            f"{where} counts every input once, in its accuracy as in its coverage; "
            f"expected sample_weight=None; received {type(sample_weight).__name__} "
            f"of shape {np.shape(sample_weight)} (weighted values: tracked.model.evaluate, "
            "which records nothing)"
        )
    if unknown:
        known = "batch_size, verbose, steps, callbacks and suite"
        if where.startswith("evaluate"):
            known = "y, batch_size, verbose, sample_weight, steps, callbacks, return_dict and suite"
        raise DLCoverageError(
            f"{where} accepts the keyword arguments {known}; "
            f"received also {', '.join(sorted(unknown))}"
        )
    return _first_steps(x, y, steps, batch_size)


def _first_steps(x: Any, y: Any, steps: Any, batch_size: int | None) -> tuple[Any, Any]:
    """Returns `x` and `y` cut to what Keras reads in `steps` batches: the first `steps`
    elements of a dataset or iterator of batches; of an array, the first
    `steps * batch_size` inputs, or all of them without a `batch_size` (Keras then
    spreads the array over the steps)."""
    if steps is None:
        return x, y
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise DLCoverageError(f"expected steps as a positive integer; received steps={steps!r}")
    if hasattr(x, "element_spec") and hasattr(x, "take"):  # a tf.data.Dataset
        return x.take(int(steps)), y
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        if batch_size is None:
            return x, y
        stop = int(steps) * int(batch_size)
        return x[:stop], (None if y is None else y[:stop])
    if isinstance(x, list | tuple):
        raise DLCoverageError(
            "expected steps with an array, a tf.data.Dataset or an iterator of batches; "
            f"received steps={steps!r} with a {type(x).__name__} of inputs"
        )
    return itertools.islice(x, int(steps)), y


def _forward(model: Any, x: Any, y: Any, batch_size: int | None) -> tuple[np.ndarray, Any]:
    """Returns predictions and labels of `x` without recording anything."""
    from .inputs import iter_batches

    predictions, labels = [], []
    rank = len(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    for inputs, batch_labels in iter_batches(x, y, batch_size=batch_size or 128, input_rank=rank):
        predictions.append(np.asarray(model.predict_on_batch(inputs)))
        if batch_labels is not None:
            labels.append(batch_labels)
    if not predictions:
        raise DLCoverageError("expected at least one input; received an empty input set")
    return np.concatenate(predictions), (np.concatenate(labels) if labels else None)


class _Recorder:
    """Feeds one tracked model's inputs through its coverage meter into the session's
    measurements."""

    def __init__(
        self, name: str, meter: CoverageMeter, measurements: Measurements, context: RunningTest
    ) -> None:
        self.name = name
        self.meter = meter
        self.measurements = measurements
        self.context = context

    @property
    def recording(self) -> bool:
        """Returns whether inputs are recorded now (not in a `no_dl_coverage` test)."""
        return not self.context.excluded

    def observe(
        self, x: Any, y: Any, batch_size: int | None
    ) -> tuple[np.ndarray, Any, dict[str, Criterion]]:
        """Runs the model on `x` through the meter into fresh criterion states, and
        records nothing yet: a call that fails later (bad labels, an error from Keras)
        must leave the suite as it was.

        Returns:
            The predictions, shape `(n, ...)`; the labels seen or `None`; the states of
            these inputs alone, for `record`.
        """
        states = self.meter.new_states()
        predictions, seen = self.meter.observe(
            x, states, y=y, batch_size=batch_size, with_labels=True
        )
        return predictions, seen, states

    def record(
        self,
        suite: str | None,
        states: dict[str, Criterion],
        inputs: int,
        correct: int = 0,
        labelled: int = 0,
    ) -> None:
        """Adds one successful call to a suite.

        Args:
            suite: the suite's name; by default the running test's id.
            states: the call's criterion states, from `observe`.
            inputs: inputs seen.
            correct, labelled: correctly classified inputs among the labelled ones.
        """
        suite = suite if suite is not None else (self.context.nodeid or "outside tests")
        record = self.measurements.suite(self.name, suite, self.meter.new_states)
        for criterion, state in states.items():
            record.states[criterion].merge(state)
        record.inputs += inputs
        record.correct += correct
        record.labelled += labelled


def _cache_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "model"


class CoverageTracker:
    """The `dl_coverage` fixture: tracks Keras models so that their test inputs are
    measured.

    Args:
        settings: the session's settings, or `None` when coverage is off.
        measurements: where measurements go (unused when off).
        context: which test is running.
        quiet_capture: returns a context manager in which output reaches the terminal
            (pytest's capture suspended), for the profiling progress bar.
    """

    def __init__(
        self,
        settings: Settings | None,
        measurements: Measurements | None,
        context: RunningTest,
        quiet_capture: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.settings = settings
        self.measurements = measurements
        self.context = context
        self.quiet_capture = quiet_capture
        self._tracked: dict[str, tuple[TrackedModel, str, tuple | None]] = {}

    @property
    def enabled(self) -> bool:
        """Returns whether coverage is measured in this session."""
        return self.settings is not None and self.settings.enabled

    def track(
        self,
        model: Any,
        name: str | None = None,
        train: Any = None,
        baseline: str | None = None,
        layers: list[str] | None = None,
    ) -> TrackedModel:
        """Returns `model` wrapped so that its test inputs are measured.

        The training profile is built from `train` once per session and name, and cached
        on disk between sessions (reused while model weights, training data and settings
        are unchanged).

        Args:
            model: a built Keras model with one input and one output.
            name: the model's name in the reports, a non-blank string; by default
                `model.name`.
            train: the training data, `(x_train, y_train)` or `x_train` alone (IDC needs
                the labels); required when coverage is on.
            baseline: the name of the tracked model this one is compared with, a
                non-blank string, or `None` for none.
            layers: names of the measured layers; by default the post-activation layers.

        Returns:
            A `TrackedModel`; with coverage off, one that only forwards to `model`.

        Raises:
            DLCoverageError: `name` or `baseline` neither a non-blank string nor `None`
                (with coverage off too, so that a suite fails the same way with it on);
                with coverage on, no `train`, or a name tracked for another model.
        """
        _check_name_argument(name, "name", "dl_coverage.track", "the model's own name")
        _check_name_argument(baseline, "baseline", "dl_coverage.track", "no baseline")
        name = name if name is not None else str(getattr(model, "name", "model"))
        if not self.enabled:
            return TrackedModel(model, name, None)
        assert self.settings is not None and self.measurements is not None

        layer_key = None if layers is None else tuple(layers)
        known = self._tracked.get(name)
        if known is not None and known[0].model is model and known[2] == layer_key:
            self.measurements.check_baseline(name, baseline)
            return known[0]

        if train is None:
            raise DLCoverageError(
                f"dl_coverage.track of model {name!r} needs the training data to build the "
                "training profile: pass train=(x_train, y_train)"
            )
        x_train, y_train = train if isinstance(train, tuple) and len(train) == 2 else (train, None)

        from .engine import CoverageMeter

        meter = CoverageMeter(
            model,
            criteria=self.settings.criteria,
            layers=layers,
            params=self.settings.params,
        )
        with self.quiet_capture():
            meter.fit(
                x_train, y_train, cache_dir=self.settings.cache_dir, cache_name=_cache_name(name)
            )
        assert meter.profile_ is not None
        if known is not None and known[1] != meter.profile_.fingerprint:
            raise DLCoverageError(
                f"model name {name!r} was tracked twice with different models, training data "
                "or layers; give each model its own name"
            )
        self.measurements.add_model(name, baseline, meter.new_states())
        tracked = TrackedModel(model, name, _Recorder(name, meter, self.measurements, self.context))
        self._tracked[name] = (tracked, meter.profile_.fingerprint, layer_key)
        return tracked
