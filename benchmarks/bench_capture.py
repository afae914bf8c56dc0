"""Cost of measuring coverage while predicting, against a plain `model.predict`.

Target: `CoverageMeter.observe` with all six criteria (NC, KMNC, NBC, SNAC, TKNC, IDC)
over 10,000 CIFAR-sized inputs on ResNet32 takes at most 1.3 times the wall time of
`model.predict(x, batch_size=128)` over the same inputs.

Three variants run interleaved, each round on the same inputs:

- `predict`: `model.predict(x, batch_size=128)`.
- `observe`: `meter.observe(x, meter.new_states())`, one forward pass per batch that
  returns the predictions and the per-neuron values (channel means taken inside the
  TensorFlow graph), then the six criteria's updates.
- `naive`: a multi-output `keras.Model` that returns every measured layer's full
  output; each batch's feature maps are fetched to numpy, reduced to channel means
  there, and given to the same six criteria.

Then, from one pass of activations kept in memory, the time of each criterion's
updates alone and of the capture alone, to show where the time goes.

The model is untrained (speed does not depend on the weights' values). IDC needs
correctly classified training inputs: the profile's "labels" are the model's own
predictions, so every profile input counts as correct.

Usage: python benchmarks/bench_capture.py [--n 10000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
from _data import load_cifar10

BATCH_SIZE = 128
_PROBES: dict = {}


def naive_observe(model, layout, subject: str, states, x: np.ndarray) -> np.ndarray:
    """Observes `x` (n, 32, 32, 3) the naive way: full feature maps to numpy, reduced there.

    Returns:
        The predictions, `(n, classes)`.
    """
    import keras

    from pytest_dlcoverage.layout import ActivationBatch

    key = (id(model), layout.names, subject)
    if key not in _PROBES:
        outputs = [model.outputs[0]] + [model.get_layer(n).output for n in layout.names]
        outputs.append(model.get_layer(subject).output)
        _PROBES[key] = keras.Model(model.inputs, outputs)
    probe = _PROBES[key]
    predictions = []
    for start in range(0, len(x), BATCH_SIZE):
        out = probe.predict_on_batch(x[start : start + BATCH_SIZE])
        maps = [np.asarray(o) for o in out[1:]]
        reduced = [m.mean(axis=tuple(range(1, m.ndim - 1))) if m.ndim > 2 else m for m in maps]
        batch = ActivationBatch(
            layout, np.concatenate(reduced[:-1], axis=1), {subject: reduced[-1]}
        )
        for state in states.values():
            state.update(batch)
        predictions.append(np.asarray(out[0]))
    return np.concatenate(predictions)


def breakdown(meter, x: np.ndarray) -> dict[str, float]:
    """Returns seconds spent by the capture alone and by each criterion's updates alone."""
    capture = meter._capture
    batches = []
    start = time.perf_counter()
    for _, _, batch in capture.stream(x, batch_size=BATCH_SIZE):
        batches.append(batch)
    seconds = {"capture (forward pass + transfer)": time.perf_counter() - start}
    for name, state in meter.new_states().items():
        start = time.perf_counter()
        for batch in batches:
            state.update(batch)
        seconds[f"update {name}"] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="test inputs (default 10000)")
    parser.add_argument("--train", type=int, default=2_000, help="profile inputs (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive variant")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from pytest_dlcoverage.engine import DEFAULT_CRITERIA, CoverageMeter

    x, _ = load_cifar10("test", args.n)
    x_train, _ = load_cifar10("train", args.train)
    model = _common.build_resnet32()
    y_train = _common.predicted_labels(model, x_train)
    meter = CoverageMeter(model, criteria=DEFAULT_CRITERIA, progress=False).fit(x_train, y_train)
    subject = meter.profile_.importance.subject_layer
    print(
        f"ResNet32, {meter.layout.size} neurons in {len(meter.layout.names)} layers, IDC subject "
        f"{subject!r} with clusters {meter.profile_.importance.cluster_counts}; "
        f"{args.n} test inputs, profile of {args.train} training inputs"
    )

    warm = x[: 2 * BATCH_SIZE]
    model.predict(warm, batch_size=BATCH_SIZE, verbose=0)
    meter.observe(warm, meter.new_states())
    variants = {
        "predict": lambda: model.predict(x, batch_size=BATCH_SIZE, verbose=0),
        "observe (6 criteria)": lambda: meter.observe(x, meter.new_states()),
    }
    if not args.skip_naive:
        naive_observe(model, meter.layout, subject, meter.new_states(), warm)
        variants["naive (full maps to numpy)"] = lambda: naive_observe(
            model, meter.layout, subject, meter.new_states(), x
        )
    times = _common.interleaved(variants, args.repeats)

    results = {"n": args.n, "repeats": args.repeats, "times_s": times}
    results["observe_over_predict"] = _common.both_ratios(
        times, "observe (6 criteria)", "predict", "<= 1.3x"
    )
    if not args.skip_naive:
        results["naive_over_predict"] = _common.both_ratios(
            times, "naive (full maps to numpy)", "predict", "~3.4x"
        )

    parts = breakdown(meter, x)
    results["breakdown_s"] = parts
    print("where observe's time goes (one pass, activations kept in memory):")
    for name, seconds in parts.items():
        print(f"  {name:<36} {seconds:7.2f} s")
    _common.report("bench_capture", results, args.json)


if __name__ == "__main__":
    main()
