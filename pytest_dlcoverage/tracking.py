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

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DLCoverageError

if TYPE_CHECKING:
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
    column (a sigmoid) whether it exceeds 0.5. Labels are sparse class indices, shape
    `(n,)` or `(n, 1)`, or one-hot, shape `(n, classes)`.

    Args:
        predictions: model outputs, shape `(n, classes)` or `(n, 1)`.
        labels: the true classes.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    n = len(predictions)
    if len(labels) != n:
        raise DLCoverageError(
            f"expected one label per input; received {n} predictions and {len(labels)} labels"
        )
    outputs = predictions.reshape(n, -1)
    if outputs.shape[1] == 1:
        predicted = (outputs[:, 0] > 0.5).astype(np.int64)
    else:
        predicted = outputs.argmax(axis=1)
    flat = labels.reshape(n, -1)
    if flat.shape[1] == outputs.shape[1] and outputs.shape[1] > 1:
        truth = flat.argmax(axis=1)
    elif flat.shape[1] == 1:
        truth = flat[:, 0]
    else:
        raise DLCoverageError(
            f"expected sparse labels of shape ({n},) or one-hot labels of shape "
            f"({n}, {outputs.shape[1]}); received labels of shape {labels.shape}"
        )
    return int(np.count_nonzero(predicted == truth)), n


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
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        correct, labelled = count_correct(predictions, labels)
        accuracy = correct / labelled if labelled else float("nan")
        return {"accuracy": accuracy} if return_dict else accuracy
    loss = float(model.compute_loss(y=labels, y_pred=predictions, training=False))
    model.reset_metrics()
    logs = {
        name: float(value)
        for name, value in model.compute_metrics(None, labels, predictions, None).items()
    }
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

    def predict(
        self, x: Any, *, suite: str | None = None, batch_size: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Returns the model's predictions for `x` and records their coverage.

        Args:
            x: inputs: an array of shape `(n, ...)`, a `tf.data.Dataset` or an iterable
                of batches.
            suite: the suite the inputs belong to; by default the running test's id.
            batch_size: inputs per forward pass.
            **kwargs: other arguments of `keras.Model.predict`; only `verbose` is
                accepted while recording (and ignored).

        Returns:
            The predictions, shape `(n, ...)`, as `keras.Model.predict` returns them.
        """
        if self._recorder is None or not self._recorder.recording:
            if batch_size is not None:
                kwargs["batch_size"] = batch_size
            return self._model.predict(x, **kwargs)
        _check_kwargs("predict", kwargs)
        predictions, _ = self._recorder.observe(x, None, suite, batch_size, labels=False)
        return predictions

    def evaluate(
        self,
        x: Any,
        y: Any = None,
        *,
        suite: str | None = None,
        batch_size: int | None = None,
        return_dict: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Evaluates the model on `x` with one forward pass, recording coverage and
        accuracy.

        Args:
            x: inputs: an array of shape `(n, ...)`, or a dataset or iterable of
                `(inputs, labels)` batches.
            y: labels for an array `x`: sparse `(n,)` or one-hot `(n, classes)`.
            suite: the suite the inputs belong to; by default the running test's id.
            batch_size: inputs per forward pass.
            return_dict: return named values, as Keras does.
            **kwargs: `verbose` is accepted and ignored.

        Returns:
            For a compiled model, its loss and metrics as `keras.Model.evaluate` returns
            them (computed from the same predictions); for an uncompiled one, the
            accuracy. See `evaluation_result`.
        """
        _check_kwargs("evaluate", kwargs)
        if self._recorder is None or not self._recorder.recording:
            predictions, labels = _forward(self._model, x, y, batch_size)
        else:
            predictions, labels = self._recorder.observe(x, y, suite, batch_size, labels=True)
        return evaluation_result(
            self._model, predictions, _required(labels, self._name), return_dict
        )


def _required(labels: Any, name: str) -> Any:
    """Returns `labels`, which `evaluate` of model `name` cannot do without."""
    if labels is None:
        raise DLCoverageError(
            f"evaluate of model {name!r} needs labels: give y for an array x, or "
            "(inputs, labels) batches; received none"
        )
    return labels


def _check_kwargs(method: str, kwargs: dict[str, Any]) -> None:
    kwargs.pop("verbose", None)
    if kwargs:
        raise DLCoverageError(
            f"a tracked model's {method} accepts x, y, suite, batch_size, return_dict and "
            f"verbose; received also {sorted(kwargs)}"
        )


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
        self, x: Any, y: Any, suite: str | None, batch_size: int | None, *, labels: bool
    ) -> tuple[np.ndarray, Any]:
        """Runs the model on `x` through the meter, adding coverage (and with `labels`,
        accuracy) to the suite; returns predictions and labels."""
        suite = suite if suite is not None else (self.context.nodeid or "outside tests")
        # A fresh set of states for this call, united into the suite only once the
        # whole input ran: an input error half-way leaves the suite unchanged.
        states = self.meter.new_states()
        predictions, seen = self.meter.observe(
            x, states, y=y, batch_size=batch_size, with_labels=True
        )
        correct = labelled = 0
        if labels:
            correct, labelled = count_correct(predictions, _required(seen, self.name))
        record = self.measurements.suite(self.name, suite, self.meter.new_states)
        for criterion, state in states.items():
            record.states[criterion].merge(state)
        record.inputs += len(predictions)
        record.correct += correct
        record.labelled += labelled
        return predictions, seen


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
            name: the model's name in the reports; by default `model.name`.
            train: the training data, `(x_train, y_train)` or `x_train` alone (IDC needs
                the labels); required when coverage is on.
            baseline: the name of the tracked model this one is compared with.
            layers: names of the measured layers; by default the post-activation layers.

        Returns:
            A `TrackedModel`; with coverage off, one that only forwards to `model`.
        """
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
