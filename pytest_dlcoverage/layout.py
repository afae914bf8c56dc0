"""Where each neuron lives: the ordered layers of a measurement and their neuron counts.

Activations of all measured layers travel as one matrix of shape
`(batch_size, layout.size)`, layer after layer in layout order; a `NeuronLayout`
maps between that matrix and the layers. It does not depend on TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class NeuronLayout:
    """The measured layers, in order, with the number of neurons of each.

    Args:
        names: layer names, unique, in the order their neurons appear in the matrix.
        sizes: neurons per layer (a Dense layer's units, a conv layer's channels).
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names, sizes = tuple(self.names), tuple(int(s) for s in self.sizes)
        if len(names) != len(sizes):
            raise ValueError(
                f"expected one size per layer name; received {len(names)} names "
                f"and {len(sizes)} sizes"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique; received {list(names)}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"every layer needs at least one neuron; received sizes={sizes}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "offsets", tuple(np.cumsum((0,) + sizes[:-1]).tolist()))

    @property
    def size(self) -> int:
        """Returns the number of neurons over all layers."""
        return sum(self.sizes)

    def slice(self, name: str) -> slice:
        """Returns the columns of layer `name` in the activation matrix."""
        try:
            i = self.names.index(name)
        except ValueError:
            raise KeyError(
                f"layer {name!r} is not in this layout; layers are {list(self.names)}"
            ) from None
        return slice(self.offsets[i], self.offsets[i] + self.sizes[i])

    def slices(self) -> dict[str, slice]:
        """Returns the columns of every layer, in layout order."""
        return {name: self.slice(name) for name in self.names}

    def layer_of_neuron(self) -> np.ndarray:
        """Returns the layer index of each neuron, shape `(size,)`."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    def to_json(self) -> list[list]:
        """Returns a JSON-serialisable form, read back by `from_json`."""
        return [[name, size] for name, size in zip(self.names, self.sizes, strict=True)]

    @classmethod
    def from_json(cls, data: list[list]) -> NeuronLayout:
        """Returns the layout written by `to_json`."""
        return cls(tuple(str(n) for n, _ in data), tuple(int(s) for _, s in data))


@dataclass(frozen=True)
class ActivationBatch:
    """Activations of one batch of inputs, as the criteria receive them.

    Args:
        layout: the layout of `values`.
        values: float32 array of shape `(batch_size, layout.size)`, the measured
            layers' neurons (conv channels already reduced to their spatial mean).
        extra: layers captured for a criterion's own use that are not part of the
            layout (for example IDC's subject layer), each `(batch_size, neurons)`.
    """

    layout: NeuronLayout
    values: np.ndarray
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def layer(self, name: str) -> np.ndarray:
        """Returns the activations of layer `name`, shape `(batch_size, neurons)`."""
        if name in self.extra:
            return self.extra[name]
        return self.values[:, self.layout.slice(name)]
