"""Exceptions and warnings of pytest-dlcoverage.

Every error a user can cause is a `DLCoverageError` (a `ValueError`, so code that
already catches bad values keeps working) whose message names the input, what was
expected and what was received. Warnings share the base class `DLCoverageWarning`
so that one kind can be filtered without hiding the others.
"""

from __future__ import annotations


class DLCoverageError(ValueError):
    """A coverage measurement cannot proceed because an input is invalid."""


class IncompatibleStateError(DLCoverageError):
    """Two criterion states cannot be merged: different criterion, settings or profile."""


class UnsupportedLayerError(DLCoverageError):
    """A layer cannot be handled exactly by the relevance propagation or the capture."""


class DLCoverageWarning(UserWarning):
    """Base class of every warning issued by pytest-dlcoverage."""


class ProfileCacheWarning(DLCoverageWarning):
    """A cached training profile was stale or unreadable and was rebuilt."""


class ClusteringWarning(DLCoverageWarning):
    """An important neuron had too few distinct values to cluster as usual."""


class ReportWriteWarning(DLCoverageWarning):
    """A report file could not be written; the terminal report is still shown."""
