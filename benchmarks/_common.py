"""What the benchmark scripts share: timing of interleaved variants, the models they
run, and a record of the machine a figure was measured on.

Benchmarks compare variants measured side by side in one run, never absolute times
across runs: round after round every variant runs once (the order rotating, so that
none always runs first after a pause), and a ratio is taken within each round. The
median of those per-round ratios is the reported figure, with every round's value.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
RESNET_DIR = REPO / "examples" / "resnet32_cifar"


def interleaved(
    variants: Mapping[str, Callable[[], Any]], repeats: int, *, log: bool = True
) -> dict[str, dict[str, list[float]]]:
    """Runs every variant once per round, `repeats` rounds, rotating the order.

    Wall time is what a user waits; CPU time (this process, all threads) is reported
    beside it because on a shared machine other processes stretch wall time much more
    than they stretch CPU time.

    Args:
        variants: name -> function to time (called without arguments).
        repeats: number of rounds.
        log: print each timing as it is taken (to follow a long run).

    Returns:
        `{"wall": {name: [seconds per round]}, "cpu": {name: [seconds per round]}}`.
    """
    names = list(variants)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            if log:
                print(
                    f"  round {round_ + 1}: {name:<30} wall {wall[name][-1]:7.2f} s   "
                    f"cpu {cpu[name][-1]:7.2f} s",
                    flush=True,
                )
    return {"wall": wall, "cpu": cpu}


def ratios(times: Mapping[str, list[float]], numerator: str, denominator: str) -> dict[str, Any]:
    """Returns the per-round ratios `numerator / denominator` and their median.

    Args:
        times: name -> seconds per round (one of the dicts `interleaved` returns).
        numerator, denominator: variant names.

    Returns:
        `{"median": float, "runs": [float, ...]}`.
    """
    runs = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return {"median": statistics.median(runs), "runs": runs}


def both_ratios(
    timings: Mapping[str, Mapping[str, list[float]]], numerator: str, denominator: str, target: str
) -> dict[str, Any]:
    """Prints and returns the wall-time and CPU-time ratios of two variants."""
    result = {}
    for kind in ("wall", "cpu"):
        result[kind] = ratios(timings[kind], numerator, denominator)
        print(format_ratio(f"{numerator} / {denominator}, {kind} time", result[kind], target))
    return result


def format_ratio(label: str, ratio: Mapping[str, Any], target: str = "") -> str:
    """Returns one line: the median ratio, every run and the target."""
    runs = ", ".join(f"{r:.2f}" for r in ratio["runs"])
    suffix = f"   (target {target})" if target else ""
    return f"{label}: median {ratio['median']:.2f}x   runs [{runs}]{suffix}"


def machine() -> dict[str, Any]:
    """Returns when and where a figure was measured: date, CPUs, load, versions."""
    import numpy as np

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["keras"] = keras.__version__
    return info


def report(name: str, results: Mapping[str, Any], json_path: str | None) -> None:
    """Prints the machine record and writes `results` with it to `json_path` if given."""
    record = {"benchmark": name, "machine": machine(), **results}
    print(f"machine: {json.dumps(record['machine'])}")
    if json_path:
        Path(json_path).write_text(json.dumps(record, indent=2) + "\n")
        print(f"results written to {json_path}")


def build_resnet32() -> Any:
    """Returns the example's untrained ResNet32 for CIFAR-10 (see examples/resnet32_cifar)."""
    sys.path.insert(0, str(RESNET_DIR))
    try:
        from resnet import build_resnet32 as build
    finally:
        sys.path.remove(str(RESNET_DIR))
    return build()


def build_lenet5() -> Any:
    """Returns an untrained LeNet-5 for 28x28 grey images: conv 6 - max pool - conv 16 -
    max pool - dense 120 - dense 84 - dense 10 (softmax), ReLU activations, as in
    DeepImportance's MNIST subject."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(16, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(120, activation="relu", name="dense1"),
            layers.Dense(84, activation="relu", name="dense2"),
            layers.Dense(10, activation="softmax", name="logits"),
        ],
        name="lenet5",
    )


def predicted_labels(model: Any, x: Any, batch_size: int = 128) -> Any:
    """Returns the model's own predicted classes for `x`, `(n,)`; used as "labels" of
    profile data for untrained models, so that every input counts as correctly classified
    for IDC (the most inputs IDC's clustering can be given, its slowest case)."""
    return model.predict(x, batch_size=batch_size, verbose=0).argmax(axis=1)
