"""The coverage engine's entry point: a model, its training profile and its criteria.

`CoverageMeter` follows the scikit-learn habit: `fit` learns the training profile from
training data (and returns the meter), `observe` measures test inputs into criterion
states while returning the model's predictions from the same forward pass.

    meter = CoverageMeter(model).fit(x_train, y_train, cache_dir=".dlcoverage")
    states = meter.new_states()
    predictions = meter.observe(x_test, states)
    {name: state.coverage() for name, state in states.items()}
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .capture import ActivationCapture, check_model
from .criteria import REGISTRY, Criterion
from .errors import DLCoverageError, ProfileCacheWarning
from .fingerprint import combine, data_fingerprint, model_fingerprint, settings_fingerprint
from .inputs import iter_batches
from .profile import PROFILE_FORMAT, RangeStats, TrainingProfile
from .progress import progress_bar
from .results import Coverage

DEFAULT_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc", "idc")
StateSet = Mapping[str, Criterion]


def _count(x: Any) -> int | None:
    # Only an array knows its number of inputs up front; a dataset's len counts batches.
    return len(x) if isinstance(x, np.ndarray) else None


class CoverageMeter:
    """Measures the coverage of one Keras model by a set of criteria.

    Args:
        model: a built Keras 3 model with one input and one output.
        criteria: names of the criteria to measure (see `pytest_dlcoverage.criteria`).
        layers: names of the layers whose neurons are measured by NC, KMNC, NBC, SNAC
            and TKNC; `None` for the default post-activation layers.
        params: per-criterion parameters, e.g. `{"nc": {"threshold": 0.5},
            "idc": {"m": 8, "layer": "pool"}}`; unnamed parameters keep their defaults.
        seed: seed of every random choice (IDC's k-means and silhouette sampling).
        batch_size: inputs per forward pass.
        progress: show a progress bar on a terminal while profiling.
    """

    def __init__(
        self,
        model: Any,
        *,
        criteria: Sequence[str] = DEFAULT_CRITERIA,
        layers: Sequence[str] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        seed: int = 0,
        batch_size: int = 128,
        progress: bool = True,
    ) -> None:
        check_model(model)
        criteria = [criteria] if isinstance(criteria, str) else list(criteria)
        unknown = [c for c in criteria if c not in REGISTRY]
        if unknown or not criteria:
            raise DLCoverageError(
                f"expected criteria among {sorted(REGISTRY)}; received {criteria}"
            )
        params = {k: dict(v) for k, v in (params or {}).items()}
        stray = [k for k in params if k not in criteria]
        if stray:
            raise DLCoverageError(
                f"parameters given for criteria that are not measured: {stray}; "
                f"measured criteria are {criteria}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DLCoverageError(
                f"expected a positive integer batch_size; received {batch_size!r}"
            )
        self.model = model
        self.criteria = tuple(dict.fromkeys(criteria))
        self.params = {c: REGISTRY[c].validate_params(**params.get(c, {})) for c in self.criteria}
        self.seed = int(seed)
        self.batch_size = batch_size
        self.progress = progress
        self._ranges_capture = ActivationCapture(model, layers)
        self.layout = self._ranges_capture.layout
        self.profile_: TrainingProfile | None = None
        self._capture: ActivationCapture | None = None

    # -- training profile -------------------------------------------------------------

    @property
    def uses_idc(self) -> bool:
        """Returns whether IDC is among the measured criteria."""
        return "idc" in self.criteria

    def settings(self) -> dict[str, Any]:
        """Returns the settings that shape the training profile (part of its fingerprint)."""
        idc = None
        if self.uses_idc:
            from . import importance

            # The clustering rules shape the centroids as much as the parameters do.
            clustering = {
                "cluster_counts": list(importance.CLUSTER_COUNTS),
                "min_values_to_cluster": importance.MIN_VALUES_TO_CLUSTER,
                "silhouette_sample_size": importance.SILHOUETTE_SAMPLE_SIZE,
                "kmeans_inits": importance.KMEANS_INITS,
            }
            idc = {**self.params["idc"], "seed": self.seed, "clustering": clustering}
        return {"format": PROFILE_FORMAT, "layers": list(self.layout.names), "idc": idc}

    def fingerprint(self, x: Any, y: Any = None) -> str:
        """Returns the fingerprint of the profile that `fit(x, y)` would build."""
        return combine(
            model_fingerprint(self.model),
            data_fingerprint(x, y, input_rank=self._ranges_capture.input_rank),
            settings_fingerprint(self.settings()),
        )

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        cache_dir: str | Path | None = None,
        cache_name: str = "profile",
    ) -> CoverageMeter:
        """Builds the training profile, or loads it from `cache_dir` when a profile with
        the same fingerprint is there.

        Args:
            x: training inputs (array, iterable of batches or `tf.data.Dataset`).
            y: training labels for an array `x`, sparse `(n,)` or one-hot `(n, classes)`;
                needed by IDC, which uses the correctly classified inputs only.
            cache_dir: folder of cached profiles; `None` disables caching.
            cache_name: file name prefix, for readers of the folder.

        Returns:
            The meter, with `profile_` set.
        """
        if self.uses_idc and y is None and isinstance(x, np.ndarray):
            raise DLCoverageError(
                "IDC needs training labels to find the correctly classified inputs; received y=None"
            )
        fingerprint = self.fingerprint(x, y)
        # A refit must never keep the profile of an earlier fit.
        self.profile_ = self._capture = None
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{cache_name}-{fingerprint[:20]}.npz"
            self.profile_ = self._load_cached(path, fingerprint)
        if self.profile_ is None:
            self.profile_ = self._build_profile(x, y, fingerprint)
            if path is not None:
                self._save_cached(path)
        self._capture = self._make_capture()
        return self

    def _load_cached(self, path: Path, fingerprint: str) -> TrainingProfile | None:
        if not path.exists():
            return None
        try:
            profile = TrainingProfile.load(path)
        except DLCoverageError as error:
            warnings.warn(f"{error}; rebuilding it", ProfileCacheWarning, stacklevel=3)
            return None
        if profile.fingerprint != fingerprint or profile.layout != self.layout:
            warnings.warn(
                f"cached profile {path} does not match the model, data and settings; rebuilding it",
                ProfileCacheWarning,
                stacklevel=3,
            )
            return None
        return profile

    def _save_cached(self, path: Path) -> None:
        try:
            self.profile_.save(path)
        except OSError as error:
            # The profile is valid; only its reuse by a later run is lost.
            warnings.warn(
                f"cannot write the training profile cache {path}: {error.strerror or error}; "
                "the profile is used but will be rebuilt next time",
                ProfileCacheWarning,
                stacklevel=3,
            )

    def _build_profile(self, x: Any, y: Any, fingerprint: str) -> TrainingProfile:
        ranges = RangeStats.empty(self.layout.size)
        with progress_bar("Profiling activations", _count(x), enabled=self.progress) as advance:
            for _, _, batch in self._ranges_capture.stream(x, batch_size=self.batch_size):
                ranges.add(batch.values)
                advance(len(batch))
        importance = None
        if self.uses_idc:
            from .importance import ImportanceProfile

            batches = (
                (inputs, labels)
                for inputs, labels in iter_batches(
                    x, y, batch_size=self.batch_size, input_rank=self._ranges_capture.input_rank
                )
            )
            idc = self.params["idc"]
            with progress_bar("Relevance and clusters", _count(x), enabled=self.progress) as adv:
                importance = ImportanceProfile.build(
                    self.model,
                    batches,
                    layer=idc["layer"],
                    m=idc["m"],
                    seed=self.seed,
                    progress=adv,
                )
        return TrainingProfile(fingerprint, self.layout, ranges, importance, self.settings())

    def _make_capture(self) -> ActivationCapture:
        importance = self.profile_.importance if self.profile_ else None
        if importance is None or importance.subject_layer in self.layout.names:
            return self._ranges_capture
        return ActivationCapture(
            self.model, list(self.layout.names), extra_layers=[importance.subject_layer]
        )

    # -- measuring --------------------------------------------------------------------

    def _require_fit(self) -> TrainingProfile:
        if self.profile_ is None or self._capture is None:
            raise DLCoverageError(
                "this CoverageMeter has no training profile yet; call fit(x_train, y_train) first"
            )
        return self.profile_

    def new_states(self) -> dict[str, Criterion]:
        """Returns one empty state per measured criterion, keyed by criterion name."""
        profile = self._require_fit()
        return {
            name: REGISTRY[name](self.layout, profile, **self.params[name])
            for name in self.criteria
        }

    def observe(
        self,
        x: Any,
        states: StateSet | Iterable[StateSet],
        *,
        y: Any = None,
        batch_size: int | None = None,
        with_labels: bool = False,
    ) -> Any:
        """Runs the model on `x` and adds the coverage of every batch to `states`.

        Args:
            x: inputs (array, iterable of batches or `tf.data.Dataset`).
            states: a dict of criterion states from `new_states`, or several such dicts
                (each is updated with every batch).
            y: labels for an array `x`; datasets and iterables carry their own.
            batch_size: inputs per forward pass; the meter's default when `None`.
            with_labels: also return the labels seen, aligned with the predictions.

        Returns:
            The predictions, shape `(n, ...)` as `model.predict` returns them; with
            `with_labels`, a pair `(predictions, labels or None)`.
        """
        self._require_fit()
        groups = [states] if isinstance(states, Mapping) else list(states)
        predictions, labels = [], []
        for batch_predictions, batch_labels, batch in self._capture.stream(
            x, y, batch_size=batch_size or self.batch_size
        ):
            for group in groups:
                for state in group.values():
                    state.update(batch)
            predictions.append(batch_predictions)
            if batch_labels is not None:
                labels.append(batch_labels)
        predictions = np.concatenate(predictions)
        if not with_labels:
            return predictions
        if labels and sum(len(b) for b in labels) != len(predictions):
            raise DLCoverageError("expected labels for every batch or for none; received a mix")
        return predictions, (np.concatenate(labels) if labels else None)

    def measure(self, x: Any, *, batch_size: int | None = None) -> dict[str, Coverage]:
        """Returns each criterion's coverage of the inputs `x` alone."""
        states = self.new_states()
        self.observe(x, states, batch_size=batch_size)
        return {name: state.coverage() for name, state in states.items()}
