"""Cost of building the training profile, and of the relevance (LRP) behind IDC.

Targets:

1. `CoverageMeter.fit` over 10,000 CIFAR-10 training inputs on ResNet32, with all six
   criteria (per-neuron ranges, IDC's relevance and clustering), takes at most 4 times
   the wall time of `model.predict(x_train, batch_size=128)`. Both run interleaved.
2. The z-rule relevance of LeNet-5's subject layer per input, reported next to the
   about 23 ms per input that DeepImportance's one-input-at-a-time LRP takes on one
   core. It is timed batched (128 inputs per pass) and one input at a time, with all
   cores and pinned to one core (a subprocess under `taskset -c 0` with TensorFlow's
   intra- and inter-op thread pools set to one thread).

The ResNet32 is untrained; its profile "labels" are its own predictions, so every
input counts as correctly classified and IDC clusters all 10,000 (its slowest case).
LeNet-5 gets random inputs of MNIST's shape (28 x 28 x 1, values in [0, 1]): the
arithmetic of relevance does not depend on the pixel values.

With `--breakdown`, each step of `fit` is also timed alone once.

Usage: python benchmarks/bench_profile.py [--n 10000] [--repeats 3] [--lrp-n 2000]
           [--breakdown] [--skip-fit] [--skip-lrp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import _common
import numpy as np
from _data import load_cifar10

BATCH_SIZE = 128
DEEPIMPORTANCE_MS_PER_INPUT = 23.0


def fit_breakdown(meter, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Returns seconds of each step of `fit`, timed one after the other (no caching)."""
    from pytest_dlcoverage.importance import cluster_values
    from pytest_dlcoverage.profile import RangeStats
    from pytest_dlcoverage.relevance import SubjectRelevance

    seconds = {}
    start = time.perf_counter()
    meter.fingerprint(x, y)
    seconds["fingerprint of weights and data"] = time.perf_counter() - start

    start = time.perf_counter()
    ranges = RangeStats.empty(meter.layout.size)
    for _, _, batch in meter._ranges_capture.stream(x, batch_size=BATCH_SIZE):
        ranges.add(batch.values)
    seconds["ranges (forward pass + statistics)"] = time.perf_counter() - start

    start = time.perf_counter()
    subject = SubjectRelevance(meter.model, None)
    subject.batch(x[:BATCH_SIZE])
    seconds["relevance: tracing"] = time.perf_counter() - start
    start = time.perf_counter()
    totals, kept = np.zeros(subject.neurons), []
    for begin in range(0, len(x), BATCH_SIZE):
        predicted, _, activations, relevance = subject.batch(x[begin : begin + BATCH_SIZE])
        correct = predicted == y[begin : begin + BATCH_SIZE]
        totals += relevance[correct].sum(axis=0)
        kept.append(activations[correct])
    seconds["relevance (forward + backward pass)"] = time.perf_counter() - start

    start = time.perf_counter()
    activations = np.concatenate(kept)
    for j in np.argsort(-totals, kind="stable")[: meter.params["idc"]["m"]]:
        cluster_values(activations[:, j], seed=meter.seed, drop_zeros=not subject.is_conv)
    seconds[f"clustering ({len(activations)} values per neuron)"] = time.perf_counter() - start
    return seconds


def bench_fit(args: argparse.Namespace) -> dict:
    from pytest_dlcoverage.engine import DEFAULT_CRITERIA, CoverageMeter

    x_train, _ = load_cifar10("train", args.n)
    model = _common.build_resnet32()
    y_train = _common.predicted_labels(model, x_train)
    print(f"ResNet32 profile over {args.n} training inputs (labels: the model's predictions)")

    def fit() -> None:
        CoverageMeter(model, criteria=DEFAULT_CRITERIA, progress=False).fit(x_train, y_train)

    # One fit of a few inputs traces the graphs, as a warm-up predict does for predict.
    model.predict(x_train[:BATCH_SIZE], batch_size=BATCH_SIZE, verbose=0)
    CoverageMeter(model, progress=False).fit(x_train[:500], y_train[:500])
    variants = {
        "predict": lambda: model.predict(x_train, batch_size=BATCH_SIZE, verbose=0),
        "fit (profile, 6 criteria)": fit,
    }
    times = _common.interleaved(variants, args.repeats)
    results = {"n": args.n, "times_s": times}
    for name in list(variants)[1:]:
        results[f"{name} / predict"] = _common.both_ratios(times, name, "predict", "<= 4x")

    if args.breakdown:
        meter = CoverageMeter(model, progress=False)
        parts = fit_breakdown(meter, x_train, y_train)
        results["breakdown_s"] = parts
        print("where fit's time goes (each step alone, once):")
        for name, seconds in parts.items():
            print(f"  {name:<44} {seconds:7.2f} s")
    return results


def lrp_timings(n: int, repeats: int) -> dict[str, float]:
    """Returns milliseconds per input of LeNet-5 subject-layer relevance, for the
    default subject layer (dense 84) and for the last conv layer, batched and one input
    at a time. Runs in the current process with its current thread settings."""
    from pytest_dlcoverage.relevance import SubjectRelevance

    model = _common.build_lenet5()
    x = np.random.default_rng(0).uniform(0, 1, (n, 28, 28, 1)).astype("float32")
    single = x[: max(1, n // 10)]
    results = {}
    for label, layer in (("subject dense2 (default)", None), ("subject conv2", "conv2")):
        subject = SubjectRelevance(model, layer)
        subject.batch(x[:BATCH_SIZE])
        subject.batch(x[:1])
        batched, one_by_one = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for begin in range(0, n, BATCH_SIZE):
                subject.batch(x[begin : begin + BATCH_SIZE])
            batched.append((time.perf_counter() - start) / n * 1000)
            start = time.perf_counter()
            for i in range(len(single)):
                subject.batch(single[i : i + 1])
            one_by_one.append((time.perf_counter() - start) / len(single) * 1000)
        results[f"{label}, batches of {BATCH_SIZE}"] = float(np.median(batched))
        results[f"{label}, one input at a time"] = float(np.median(one_by_one))
    return results


def one_core_worker(n: int, repeats: int) -> None:
    """Entry point of the pinned subprocess: one TensorFlow thread, timings as JSON."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print("RESULT " + json.dumps(lrp_timings(n, repeats)), flush=True)


def bench_lrp(args: argparse.Namespace) -> dict:
    print(f"LeNet-5 relevance over {args.lrp_n} random 28x28x1 inputs, ms per input")
    all_cores = lrp_timings(args.lrp_n, args.repeats)

    command = [sys.executable, __file__, "--one-core-worker", "--lrp-n", str(args.lrp_n)]
    command += ["--repeats", str(args.repeats)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    one_core = json.loads(line[len("RESULT ") :])

    print(f"  {'':<46} {'all cores':>10} {'one core':>10}")
    for key in all_cores:
        print(f"  {key:<46} {all_cores[key]:10.3f} {one_core[key]:10.3f}")
    print(f"  DeepImportance (one input at a time, one core): {DEEPIMPORTANCE_MS_PER_INPUT} ms")
    return {
        "n": args.lrp_n,
        "ms_per_input_all_cores": all_cores,
        "ms_per_input_one_core": one_core,
        "pinned_with": "taskset -c 0" if shutil.which("taskset") else "one TF thread only",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="profile inputs (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--lrp-n", type=int, default=2_000, help="LeNet-5 inputs (default 2000)")
    parser.add_argument("--skip-fit", action="store_true", help="only the LeNet-5 relevance")
    parser.add_argument("--skip-lrp", action="store_true", help="only the ResNet32 profile")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time each step of fit once (one more fit)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--one-core-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_core_worker:
        one_core_worker(args.lrp_n, args.repeats)
        return

    results = {"repeats": args.repeats}
    if not args.skip_fit:
        results["profile"] = bench_fit(args)
    if not args.skip_lrp:
        results["lrp_lenet5"] = bench_lrp(args)
    _common.report("bench_profile", results, args.json)


if __name__ == "__main__":
    main()
