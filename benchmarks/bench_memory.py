"""Peak memory of observing many inputs against few: memory must not grow with inputs.

Target: the peak resident memory of a process that observes 50,000 CIFAR-sized inputs
with ResNet32 and all six criteria is within 10% of one that observes 5,000.

Each measurement runs in a fresh subprocess (a process's high-water mark never falls),
which builds the same seeded ResNet32, loads its training profile from a cache that a
warm-up subprocess built, and observes the inputs streamed as a generator of batches
(or, with `--source dataset`, a `tf.data.Dataset` over that generator) decoded from
the CIFAR-10 JPEG archive one batch at a time, so that no array of all the inputs
ever exists. The inputs are the 50,000 training images (the largest CIFAR-10 split);
the smaller run takes the first tenth of them.

Reported per run: the peak resident set size of the process (`ru_maxrss`), and the
resident memory just before observing (model, TensorFlow runtime, profile), so that
the part that observing adds is visible. Sizes alternate, `--repeats` rounds.

Usage: python benchmarks/bench_memory.py [--n 50000] [--repeats 3]
           [--source generator|dataset] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _common

BATCH_SIZE = 128
PROFILE_INPUTS = 2_000


def rss_now_mib() -> float:
    """Returns the current resident set size of this process in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """Returns this process's resident high-water mark in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(n: int, source: str, cache_dir: str) -> None:
    """Observes `n` streamed inputs; prints one JSON line of memory figures."""
    import keras
    from _data import load_cifar10, stream_cifar10

    from pytest_dlcoverage.engine import CoverageMeter

    keras.utils.set_random_seed(0)
    model = _common.build_resnet32()
    x_train, _ = load_cifar10("train", PROFILE_INPUTS)
    y_train = _common.predicted_labels(model, x_train)
    meter = CoverageMeter(model, progress=False).fit(x_train, y_train, cache_dir=cache_dir)
    del x_train

    batches = (images for images, _ in stream_cifar10("train", n, BATCH_SIZE))
    if source == "dataset":
        import tensorflow as tf

        signature = tf.TensorSpec((None, 32, 32, 3), tf.uint8)
        batches = tf.data.Dataset.from_generator(
            lambda: (images for images, _ in stream_cifar10("train", n, BATCH_SIZE)),
            output_signature=signature,
        )
    before = rss_now_mib()
    start = time.perf_counter()
    states = meter.new_states()
    predictions = meter.observe(batches, states)
    seconds = time.perf_counter() - start
    assert len(predictions) == n, (len(predictions), n)
    figures = {
        "n": n,
        "rss_before_observe_mib": before,
        "rss_after_observe_mib": rss_now_mib(),
        "peak_rss_mib": peak_rss_mib(),
        "observe_s": seconds,
        "coverage": {name: str(state.coverage()) for name, state in states.items()},
    }
    print("RESULT " + json.dumps(figures), flush=True)


def run_worker(n: int, source: str, cache_dir: str) -> dict:
    """Runs `worker` in a fresh interpreter and returns its figures."""
    command = [sys.executable, __file__, "--worker", "--n", str(n), "--source", source]
    command += ["--cache-dir", cache_dir]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker for n={n} failed:\n{done.stderr[-3000:]}")
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="large run (default 50000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--source", choices=("generator", "dataset"), default="generator")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.n, args.source, args.cache_dir)
        return

    small, large = args.n // 10, args.n
    runs: dict[int, list[dict]] = {small: [], large: []}
    with tempfile.TemporaryDirectory(prefix="dlcov-bench-memory-") as cache_dir:
        print(f"warm-up: building the profile cache ({PROFILE_INPUTS} training inputs)")
        run_worker(BATCH_SIZE, args.source, cache_dir)
        for round_ in range(args.repeats):
            order = (small, large) if round_ % 2 == 0 else (large, small)
            for n in order:
                figures = run_worker(n, args.source, cache_dir)
                runs[n].append(figures)
                print(
                    f"  round {round_ + 1}: {n:>6} inputs: peak {figures['peak_rss_mib']:7.1f} "
                    f"MiB, before observe {figures['rss_before_observe_mib']:7.1f} MiB, "
                    f"observe {figures['observe_s']:6.1f} s",
                    flush=True,
                )

    ratio_runs = [
        a["peak_rss_mib"] / b["peak_rss_mib"] for a, b in zip(runs[large], runs[small], strict=True)
    ]
    ratio = {"median": statistics.median(ratio_runs), "runs": ratio_runs}
    print(_common.format_ratio(f"peak RSS {large} / {small} inputs", ratio, "<= 1.10x"))
    for n in (small, large):
        grown = [r["peak_rss_mib"] - r["rss_before_observe_mib"] for r in runs[n]]
        print(f"  {n:>6} inputs: peak minus RSS before observe, MiB: {[round(g) for g in grown]}")
    results = {"source": args.source, "repeats": args.repeats, "runs": runs, "ratio": ratio}
    _common.report("bench_memory", results, args.json)


if __name__ == "__main__":
    main()
