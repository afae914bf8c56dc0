"""Turning the inputs a user gives into a stream of numpy batches.

Accepted inputs: a numpy array (or anything `np.asarray` takes) with the batch on the
first axis; a `tf.data.Dataset` whose elements are inputs or `(inputs, labels)`
pairs, batched or not; or any other iterable of batches, each an array or an
`(inputs, labels)` pair. Streams never hold more than one batch in memory, so memory
does not grow with the number of inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .errors import DLCoverageError

Batch = tuple[np.ndarray, "np.ndarray | None"]


def _is_dataset(data: Any) -> bool:
    # Checked by name so that plain numpy use never imports TensorFlow.
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def _refuse_named_inputs(item: Any) -> None:
    if isinstance(item, Mapping):
        raise DLCoverageError(
            "expected each batch as an array or an (inputs, labels) pair; received a dict "
            f"with keys {sorted(map(str, item))} (models with named inputs are not supported)"
        )


def _split_pair(item: Any) -> Batch:
    _refuse_named_inputs(item)
    if isinstance(item, tuple | list) and len(item) in (2, 3) and not _is_array_like_batch(item):
        return np.asarray(item[0]), np.asarray(item[1])
    return np.asarray(item), None


def _is_array_like_batch(item: Any) -> bool:
    # A list of equally shaped numbers is one batch of inputs, not an (x, y) pair.
    return isinstance(item, list) and all(np.isscalar(v) for v in item)


def _is_list_of_batches(x: list, input_rank: int | None) -> bool:
    # A list of arrays of the model's full input rank (or of (inputs, labels) pairs of
    # them) is a list of batches; a list of single inputs or of numbers is one array.
    if not x or input_rank is None:
        return False
    first = x[0]
    if isinstance(first, Mapping):
        return True  # batches of named inputs, refused with a clear message later
    if isinstance(first, tuple) and len(first) == 2:
        first = first[0]
    return hasattr(first, "__array__") and np.ndim(first) == input_rank


def iter_batches(
    x: Any, y: Any = None, *, batch_size: int = 128, input_rank: int | None = None
) -> Iterator[Batch]:
    """Yields `(inputs, labels)` batches of at most `batch_size` inputs.

    Args:
        x: the inputs (see the module docstring for the accepted forms).
        y: labels for an array `x`, shape `(n,)` or `(n, classes)`; with datasets and
            iterables, labels come from the elements instead, and a separate `y` is an
            error.
        batch_size: the batch size used to split arrays and unbatched datasets.
        input_rank: rank of one batch of model inputs, batch axis included; used to tell
            an unbatched dataset from a batched one.

    Returns:
        An iterator of pairs: inputs of shape `(batch, ...)`, and labels or `None`.
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise DLCoverageError(f"expected a positive integer batch_size; received {batch_size!r}")
    if _is_dataset(x):
        if y is not None:
            raise DLCoverageError(
                "expected the labels of a tf.data.Dataset inside it, as (inputs, labels) "
                f"elements; received a separate y, {_shown(y)}"
            )
        yield from _iter_dataset(x, batch_size, input_rank)
        return
    if (
        isinstance(x, np.ndarray)
        or hasattr(x, "__array__")
        or (isinstance(x, list) and not _is_list_of_batches(x, input_rank))
    ):
        yield from _iter_array(x, y, batch_size)
        return
    if not isinstance(x, Iterable):
        raise DLCoverageError(
            "expected inputs as a numpy array, a tf.data.Dataset or an iterable of batches; "
            f"received {type(x).__name__}"
        )
    if y is not None:
        raise DLCoverageError(
            "labels must come inside the batches when inputs are an iterable; received a separate y"
        )
    for item in x:
        inputs, labels = _split_pair(item)
        yield from _iter_array(inputs, labels, batch_size)


def _shown(value: Any) -> str:
    """Returns the type of `value` and, when it has one, its shape."""
    shape = getattr(value, "shape", None)
    return type(value).__name__ + ("" if shape is None else f" of shape {tuple(shape)}")


def _iter_array(x: Any, y: Any, batch_size: int) -> Iterator[Batch]:
    x = np.asarray(x)
    if x.ndim == 0:
        raise DLCoverageError(
            f"expected inputs with a batch axis first; received a scalar of dtype {x.dtype}"
        )
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise DLCoverageError(
                f"expected one label per input; received {len(x)} inputs and {len(y)} labels"
            )
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        yield x[start:stop], (None if y is None else y[start:stop])


def _iter_dataset(dataset: Any, batch_size: int, input_rank: int | None) -> Iterator[Batch]:
    spec = dataset.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) else spec
    _refuse_named_inputs(x_spec)
    if input_rank is not None and x_spec.shape.rank == input_rank - 1:
        dataset = dataset.batch(batch_size)
    for item in dataset.as_numpy_iterator():
        inputs, labels = _split_pair(item)
        yield from _iter_array(inputs, labels, batch_size)


def validate_batch(
    x: np.ndarray, expected_shape: tuple, dtype: str = "float32", what: str = "inputs"
) -> np.ndarray:
    """Returns `x` in the model's input dtype after checking it against the input shape.

    Args:
        x: one batch, shape `(batch, ...)`.
        expected_shape: the model's input shape with `None` for free axes, batch axis
            included.
        dtype: the model's input dtype.
        what: how the error messages call the array.

    Raises:
        DLCoverageError: non-numeric dtype, wrong shape, NaN or infinity.
    """
    if x.dtype.kind not in "biuf":
        raise DLCoverageError(f"expected numeric {what}; received an array of dtype {x.dtype}")
    expected = tuple(expected_shape)
    if x.ndim != len(expected) or any(
        e is not None and e != r for e, r in zip(expected[1:], x.shape[1:], strict=True)
    ):
        shown = "(batch, " + ", ".join("?" if e is None else str(e) for e in expected[1:]) + ")"
        raise DLCoverageError(
            f"expected {what} of shape {shown} for this model; received shape {x.shape}"
        )
    x = x.astype(dtype, copy=False)
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DLCoverageError(
            f"expected finite {what}; received {bad} NaN or infinite values in a batch of {len(x)}"
        )
    return x


def _described(labels: np.ndarray) -> str:
    """Returns what labels were received: dtype, shape and, if numeric, min and max."""
    text = f"labels of dtype {labels.dtype} and shape {labels.shape}"
    if labels.size and labels.dtype.kind in "biuf":
        text += f", min {labels.min()}, max {labels.max()}"
    return text


def _check_one_hot(rows: np.ndarray, labels: np.ndarray) -> None:
    """Raises `DLCoverageError` naming the first of `rows`, shape `(n, classes)`, that is
    not one-hot: a value other than 0 or 1, or not exactly one 1."""
    with np.errstate(invalid="ignore"):
        binary = (rows == 0) | (rows == 1)
    ones = np.count_nonzero(rows == 1, axis=1)
    bad = ~binary.all(axis=1) | (ones != 1)
    if not bad.any():
        return
    row = int(np.argmax(bad))
    why = "values other than 0 and 1" if not binary[row].all() else f"{ones[row]} ones"
    raise DLCoverageError(
        f"expected one-hot labels of shape (n, {rows.shape[1]}): every value 0 or 1, exactly "
        f"one 1 per row; received {_described(labels)}; {np.count_nonzero(bad)} of {len(rows)} "
        f"rows are not one-hot, the first is row {row}: {_row_text(rows[row])} ({why})"
    )


def _row_text(row: np.ndarray) -> str:
    """Returns one label row for a message: all its values, or for a long row only
    the nonzero ones by column."""
    if len(row) <= 10:
        return "[" + ", ".join(f"{value:g}" for value in row.tolist()) + "]"
    nonzero = np.flatnonzero(row != 0)
    shown = ", ".join(f"{column}: {row[column]:g}" for column in nonzero[:10].tolist())
    more = f", and {len(nonzero) - 10} more" if len(nonzero) > 10 else ""
    return f"nonzero values by column {{{shown}{more}}}"


def true_classes(labels: Any, classes: int) -> np.ndarray:
    """Returns the true class of every input, from labels checked against a classifier
    with `classes` output columns.

    Sparse labels, shape `(n,)` or `(n, 1)`, must hold integral values in
    `[0, classes)`, or 0 and 1 for a single (sigmoid) output column. One-hot labels,
    shape `(n, classes)`, must be exact: every value 0 or 1, one 1 per row. Soft or
    smoothed rows are refused, since their largest value is no true class (and tied
    rows would all count as class 0).

    Args:
        labels: the true labels of `n` inputs.
        classes: the model's output columns per input.

    Returns:
        The true classes, integers of shape `(n,)`.

    Raises:
        DLCoverageError: labels of another shape, not numeric, sparse labels that are
            not class indices, or rows that are not one-hot; the message says what was
            received.
    """
    labels = np.asarray(labels)
    if labels.ndim >= 1 and len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    sparse = "0 or 1" if classes == 1 else f"integers in [0, {classes})"
    expected = f"expected sparse labels, {sparse}, of shape (n,) or (n, 1)"
    if classes > 1:
        expected += f", or one-hot labels of shape (n, {classes})"
    if labels.ndim == 0 or labels.dtype.kind not in "biuf":
        raise DLCoverageError(f"{expected}; received {_described(labels)}")

    flat = labels.reshape(len(labels), -1)
    if classes > 1 and flat.shape[1] == classes:
        _check_one_hot(flat, labels)
        return flat.argmax(axis=1)
    if flat.shape[1] != 1:
        raise DLCoverageError(f"{expected}; received {_described(labels)}")

    values = flat[:, 0].astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(values) & (values == np.round(values))
        valid &= (values >= 0) & (values < max(classes, 2))
    if not valid.all():
        bad = int(np.count_nonzero(~valid))
        raise DLCoverageError(
            f"{expected}; received {_described(labels)}, {bad} of {len(values)} outside that"
        )
    return values.astype(np.int64)
