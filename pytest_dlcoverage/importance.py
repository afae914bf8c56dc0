"""The importance profile of IDC: important neurons of the subject layer and their clusters.

IDC, importance-driven coverage (Gerasimou et al., "Importance-Driven Deep Learning
System Testing", ICSE 2020), learns two things from the training data:

1. Importance. For every correctly classified training input, the relevance of each
   subject-layer neuron to the predicted class is computed by Layer-wise Relevance
   Propagation (see `relevance.py`) and summed with its sign over the inputs. The `m`
   neurons with the largest totals are the important neurons (ties go to the lower
   index).
2. Clusters. Each important neuron's activation values over the same inputs are
   clustered with k-means for k in {2, 3, 4}; the k with the best silhouette score is
   kept, and the cluster centres (centroids) are the neuron's activation levels.

Following the released DeepImportance code, for a dense (rank-2) subject layer the
exact zeros (inactive ReLU outputs) are dropped before clustering, and a neuron with
fewer than 10 values left gets the single centroid 0. A convolutional subject layer's
neurons are channel means and are clustered as they are.

Unlike the released code, k-means is seeded (`random_state=seed`), relevance is
computed in batches on the model itself, and the silhouette score of more than
`SILHOUETTE_SAMPLE_SIZE` values is estimated on a seeded random sample of that many
values (scikit-learn's `sample_size`), because the exact score costs time and memory
quadratic in the number of values. The estimate may pick a different k than the exact
score would when two k score almost equally; the same seed always picks the same k.

Memory: the subject activations of the correctly classified inputs are kept until
clustering, `inputs x neurons x 4` bytes (50,000 inputs of a 64-channel layer: 13 MB).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ClusteringWarning, DLCoverageError
from .inputs import true_classes

CLUSTER_COUNTS = (2, 3, 4)
MIN_VALUES_TO_CLUSTER = 10
MIN_CORRECT_INPUTS = max(MIN_VALUES_TO_CLUSTER, max(CLUSTER_COUNTS))
SILHOUETTE_SAMPLE_SIZE = 4000
KMEANS_INITS = 10


def _check_m(m: Any) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise DLCoverageError(f"idc: m must be a positive integer; received m={m!r}")
    return int(m)


def cluster_values(
    values: np.ndarray, *, seed: int = 0, drop_zeros: bool = False, neuron: str = "neuron"
) -> np.ndarray:
    """Clusters one neuron's activation values; returns the sorted centroids.

    k-means runs for each k in `CLUSTER_COUNTS` that the values allow (a k larger than
    the number of distinct values is skipped) and the k with the highest silhouette
    score wins; equal scores keep the smaller k.

    Args:
        values: the neuron's activation values, shape `(n,)`.
        seed: `random_state` of k-means and of the silhouette sample.
        drop_zeros: drop exact zeros first, and return the single centroid 0 when fewer
            than `MIN_VALUES_TO_CLUSTER` values are left (the rule of the released
            DeepImportance code for dense layers).
        neuron: how warnings name the neuron.

    Returns:
        The centroids, sorted, float64, shape `(clusters,)` with 1 <= clusters <= 4.

    Raises:
        DLCoverageError: fewer than `MIN_VALUES_TO_CLUSTER` values (without
            `drop_zeros`), or non-finite values.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    values = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(values).all():
        raise DLCoverageError(f"idc: expected finite activation values for {neuron}; received NaN")
    if drop_zeros:
        values = values[values != 0]
        if len(values) < MIN_VALUES_TO_CLUSTER:
            warnings.warn(
                f"idc: {neuron} has {len(values)} non-zero activation values, fewer than "
                f"{MIN_VALUES_TO_CLUSTER}; it gets the single centroid 0",
                ClusteringWarning,
                stacklevel=2,
            )
            return np.zeros(1)
    elif len(values) < MIN_VALUES_TO_CLUSTER:
        raise DLCoverageError(
            f"idc: clustering {neuron} needs at least {MIN_VALUES_TO_CLUSTER} values; "
            f"received {len(values)}"
        )

    distinct = np.unique(values)
    if len(distinct) == 1:
        warnings.warn(
            f"idc: {neuron} takes the single value {distinct[0]!r} on all "
            f"{len(values)} inputs; it gets that value as its single centroid",
            ClusteringWarning,
            stacklevel=2,
        )
        return distinct

    column = values[:, None]
    sample_size = SILHOUETTE_SAMPLE_SIZE if len(values) > SILHOUETTE_SAMPLE_SIZE else None
    best_score, best_centroids = -np.inf, None
    for k in CLUSTER_COUNTS:
        if k > len(distinct):
            continue
        # One thread: scikit-learn's OpenMP threads fight TensorFlow's pool for the cores,
        # which made 1-D k-means about 100 times slower than single-threaded here.
        with threadpool_limits(1):
            kmeans = KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=seed).fit(column)
            try:
                score = silhouette_score(
                    column, kmeans.labels_, sample_size=sample_size, random_state=seed
                )
            except ValueError:
                # The silhouette is undefined when the (sampled) values fall in one cluster
                # or every value is its own cluster; such a k cannot be judged, so skip it.
                continue
        if score > best_score:
            best_score, best_centroids = score, kmeans.cluster_centers_.ravel()
    if best_centroids is None:
        raise DLCoverageError(
            f"idc: no k in {list(CLUSTER_COUNTS)} gives a defined silhouette score for "
            f"{neuron} ({len(values)} values, {len(distinct)} distinct)"
        )
    # np.unique also sorts; k-means centres of 1-D data are distinct, so nothing is lost.
    return np.unique(best_centroids)


def _class_labels(y: Any, inputs: int, classes: int, batch: int) -> np.ndarray:
    """Returns labels as class indices `(inputs,)` from sparse or one-hot labels."""
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != inputs:
        raise DLCoverageError(
            f"idc: expected one label per input in training batch {batch} of {inputs} inputs; "
            f"received labels of shape {y.shape}"
        )
    try:
        return true_classes(y, classes)
    except DLCoverageError as error:
        raise DLCoverageError(f"idc: training batch {batch}: {error}") from None


@dataclass(eq=False)
class ImportanceProfile:
    """What IDC learned from the training data about one subject layer.

    Attributes:
        subject_layer: name of the subject layer.
        m: number of important neurons.
        seed: the seed of k-means and of the silhouette sample.
        relevance: total signed relevance of each subject-layer neuron over the
            correctly classified training inputs, shape `(neurons,)`, float64.
        important: indices of the important neurons in the subject layer, most
            relevant first, shape `(m,)`, int64.
        centroids: per important neuron (same order), its sorted centroids, each a
            float64 array of 1 to 4 values.
        inputs_used: the number of correctly classified training inputs used.
        conv: whether the subject layer is convolutional (neurons are channel means).
    """

    subject_layer: str
    m: int
    seed: int
    relevance: np.ndarray
    important: np.ndarray
    centroids: list[np.ndarray]
    inputs_used: int
    conv: bool = False

    def __post_init__(self) -> None:
        self.m = _check_m(self.m)
        self.seed = int(self.seed)
        self.inputs_used = int(self.inputs_used)
        self.conv = bool(self.conv)
        self.relevance = np.asarray(self.relevance, dtype=np.float64)
        self.important = np.asarray(self.important, dtype=np.int64)
        self.centroids = [np.asarray(c, dtype=np.float64) for c in self.centroids]
        neurons = len(self.relevance)
        if self.relevance.ndim != 1 or self.important.shape != (self.m,):
            raise DLCoverageError(
                f"idc: expected relevance of shape (neurons,) and {self.m} important neurons; "
                f"received shapes {self.relevance.shape} and {self.important.shape}"
            )
        if len(set(self.important.tolist())) != self.m or not all(
            0 <= i < neurons for i in self.important.tolist()
        ):
            raise DLCoverageError(
                f"idc: expected {self.m} distinct important neuron indices in [0, {neurons}); "
                f"received {self.important.tolist()}"
            )
        if len(self.centroids) != self.m or not all(
            c.ndim == 1 and len(c) >= 1 and np.isfinite(c).all() and (np.diff(c) > 0).all()
            for c in self.centroids
        ):
            raise DLCoverageError(
                f"idc: expected {self.m} arrays of finite, strictly increasing centroids; "
                f"received {[c.tolist() for c in self.centroids]}"
            )

    @property
    def neurons(self) -> int:
        """Returns the number of neurons of the subject layer."""
        return len(self.relevance)

    @property
    def cluster_counts(self) -> tuple[int, ...]:
        """Returns the number of clusters of each important neuron."""
        return tuple(len(c) for c in self.centroids)

    @property
    def combinations(self) -> int:
        """Returns the number of cluster combinations, IDC's total (an exact integer)."""
        return math.prod(self.cluster_counts)

    @classmethod
    def build(
        cls,
        model: Any,
        batches: Iterable[tuple[Any, Any]],
        layer: str | None = None,
        m: int = 6,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> ImportanceProfile:
        """Computes relevance and clusters over training data, streaming it once.

        Args:
            model: a built Keras 3 classifier (see `relevance.SubjectRelevance`).
            batches: `(inputs, labels)` pairs; inputs `(batch_size, ...)`, labels sparse
                `(batch_size,)` or one-hot `(batch_size, classes)`.
            layer: the subject layer's name; `None` for the input of the classifier head.
            m: number of important neurons, 1 to the subject layer's neuron count.
            seed: seed of k-means and of the silhouette sample.
            progress: called with the number of inputs of each batch once it is done.

        Returns:
            The importance profile.

        Raises:
            DLCoverageError: bad `m`, missing or malformed labels, non-finite inputs,
                or fewer than `MIN_CORRECT_INPUTS` correctly classified inputs.
            UnsupportedLayerError: the model cannot be handled exactly (see
                `relevance.py`).
        """
        from .relevance import SubjectRelevance

        m = _check_m(m)
        subject = SubjectRelevance(model, layer)
        if m > subject.neurons:
            raise DLCoverageError(
                f"idc: m must be at most the {subject.neurons} neurons of subject layer "
                f"{subject.subject_name!r}; received m={m}"
            )

        totals = np.zeros(subject.neurons, dtype=np.float64)
        kept: list[np.ndarray] = []
        seen = 0
        for index, item in enumerate(batches):
            if not isinstance(item, (tuple, list)) or len(item) != 2 or item[1] is None:
                raise DLCoverageError(
                    "idc: expected (inputs, labels) batches, since IDC uses the correctly "
                    f"classified training inputs only; batch {index} has no labels"
                )
            x, y = item
            predicted, logits, activations, relevance = subject.batch(x)
            labels = _class_labels(y, len(predicted), logits.shape[1], index)
            correct = predicted == labels
            totals += relevance[correct].sum(axis=0, dtype=np.float64)
            kept.append(activations[correct])
            seen += len(predicted)
            if progress is not None:
                progress(len(predicted))

        used = sum(len(a) for a in kept)
        if used < MIN_CORRECT_INPUTS:
            raise DLCoverageError(
                f"idc: needs at least {MIN_CORRECT_INPUTS} correctly classified training inputs "
                f"to cluster the important neurons; received {used} correct of {seen} inputs"
            )
        activations = np.concatenate(kept)
        important = np.argsort(-totals, kind="stable")[:m]
        centroids = [
            cluster_values(
                activations[:, j],
                seed=seed,
                drop_zeros=not subject.is_conv,
                neuron=f"neuron {j} of layer {subject.subject_name!r}",
            )
            for j in important
        ]
        return cls(
            subject.subject_name, m, seed, totals, important, centroids, used, subject.is_conv
        )

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Returns a JSON-serialisable description and the numeric arrays of the profile,
        read back by `from_arrays`."""
        meta = {
            "subject_layer": self.subject_layer,
            "m": self.m,
            "seed": self.seed,
            "inputs_used": self.inputs_used,
            "conv": self.conv,
            "cluster_counts": list(self.cluster_counts),
        }
        arrays = {
            "relevance": self.relevance,
            "important": self.important,
            "centroids": np.concatenate(self.centroids),
        }
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ImportanceProfile:
        """Returns the profile that `to_arrays` described.

        Raises:
            DLCoverageError: the description and arrays do not fit together.
        """
        counts = [int(c) for c in meta["cluster_counts"]]
        flat = np.asarray(arrays["centroids"], dtype=np.float64)
        if sum(counts) != len(flat):
            raise DLCoverageError(
                f"idc: expected {sum(counts)} stored centroids for cluster counts {counts}; "
                f"received {len(flat)}"
            )
        centroids = np.split(flat, np.cumsum(counts)[:-1])
        return cls(
            str(meta["subject_layer"]),
            meta["m"],
            meta["seed"],
            arrays["relevance"],
            arrays["important"],
            centroids,
            meta["inputs_used"],
            meta.get("conv", False),
        )
