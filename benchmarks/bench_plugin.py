"""Cost of the pytest plugin: a test suite run with `--dl-coverage` against without, and
the plugin's share of pytest's start-up when coverage is off.

Targets:

1. With a warm training-profile cache, a pytest suite that predicts 10,000 CIFAR-10
   test images with ResNet32 through the `dl_coverage` fixture takes at most 1.3 times
   as long with `--dl-coverage` (all six criteria, terminal report) as without.
2. Importing the plugin adds under 50 ms to pytest's start-up when coverage is off.

For (1) the script writes the suite to a temporary folder: a session fixture builds a
seeded ResNet32 (the same weights every run, so the cached profile is reused) and
tracks it with 2,000 CIFAR-10 training images and their labels; five tests each
predict a fifth of the test images through the tracked model. One warm-up run with
`--dl-coverage` builds the profile cache; then runs without and with alternate,
`--repeats` rounds, each a fresh `python -m pytest` process, timed from outside
(interpreter start, imports and data decoding included, as a user waits for them).

For (2), a one-test suite is started repeatedly, alternating pytest with the plugin
and without it, in two settings: every installed plugin loaded (`-p no:dlcoverage`
removes ours), and plugin auto-loading off with ours added by `-p` (only pytest's own
start-up around it). Reported: the median of the paired differences of wall time and
of CPU time (user + system, less sensitive to other processes on a shared machine),
and the import time of the plugin's modules from `python -X importtime`.

Usage: python benchmarks/bench_plugin.py [--n 10000] [--repeats 3] [--startup-pairs 20]
           [--skip-suite] [--skip-startup] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _common

BENCH_DIR = Path(__file__).resolve().parent
PARTS = 5
TRAIN = 2_000

CONFTEST = """
import sys

import pytest

sys.path.insert(0, {bench_dir!r})

import _common  # noqa: E402
from _data import load_cifar10  # noqa: E402

N = {n}


@pytest.fixture(scope="session")
def resnet32(dl_coverage):
    import keras

    keras.utils.set_random_seed(0)
    model = _common.build_resnet32()
    x_train, y_train = load_cifar10("train", {train})
    return dl_coverage.track(model, name="resnet32", train=(x_train, y_train))


@pytest.fixture(scope="session")
def x_test():
    return load_cifar10("test", N)[0]
"""

TEST_FILE = """
import pytest

from conftest import N

PARTS = {parts}


@pytest.mark.parametrize("part", range(PARTS))
def test_predict(resnet32, x_test, part):
    chunk = x_test[part * N // PARTS : (part + 1) * N // PARTS]
    predictions = resnet32.predict(chunk, batch_size=128, verbose=0)
    assert predictions.shape == (len(chunk), 10)
"""


def write_suite(folder: Path, n: int) -> None:
    """Writes the benchmark suite (conftest, one test module, an ini) into `folder`."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    conftest = CONFTEST.format(bench_dir=str(BENCH_DIR), n=n, train=TRAIN)
    (folder / "conftest.py").write_text(textwrap.dedent(conftest))
    (folder / "test_predict.py").write_text(TEST_FILE.format(parts=PARTS))


def run_pytest(folder: Path, args: list[str], env: dict | None = None) -> dict:
    """Runs `python -m pytest ARGS` in `folder`; returns wall and CPU seconds and the
    session time pytest reports. Raises when the run does not pass."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    session = re.search(r"passed in ([0-9.]+)s", done.stdout)
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "session_s": float(session.group(1)) if session else None,
        "stdout": done.stdout,
    }


def bench_suite(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="dlcov-bench-plugin-") as tmp:
        folder = Path(tmp)
        write_suite(folder, args.n)
        print(f"suite: {PARTS} tests predicting {args.n} CIFAR-10 test images with ResNet32")
        warm = run_pytest(folder, ["--dl-coverage"])
        print(f"  warm-up with --dl-coverage (builds the profile cache): {warm['wall_s']:.1f} s")
        report = warm["stdout"][warm["stdout"].find("dl-coverage") :].strip()
        print(textwrap.indent(report[:1500], "    "))

        runs: dict[str, list[dict]] = {"without": [], "with --dl-coverage": []}
        flags = {"without": [], "with --dl-coverage": ["--dl-coverage"]}
        for round_ in range(args.repeats):
            names = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
            for name in names:
                figures = run_pytest(folder, flags[name])
                figures.pop("stdout")
                runs[name].append(figures)
                print(
                    f"  round {round_ + 1}: {name:<20} wall {figures['wall_s']:6.1f} s, "
                    f"cpu {figures['cpu_s']:6.1f} s, pytest session {figures['session_s']:6.1f} s",
                    flush=True,
                )
    results = {"n": args.n, "runs": runs}
    labels = {
        "wall_s": "wall time",
        "cpu_s": "CPU time",
        "session_s": "pytest's reported session time",
    }
    for measure, label in labels.items():
        times = {name: [r[measure] for r in rows] for name, rows in runs.items()}
        ratio = _common.ratios(times, "with --dl-coverage", "without")
        results[f"ratio_{measure}"] = ratio
        print(_common.format_ratio(f"with / without, {label}", ratio, "<= 1.3x"))
    return results


def plugin_import_ms() -> dict[str, float]:
    """Returns the import time in ms of each pytest_dlcoverage module that pytest's
    start-up and the plugin's configure hook import, from `python -X importtime`."""
    code = "import pytest, pytest_dlcoverage.plugin, pytest_dlcoverage.tracking"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    modules = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and match.group(4).startswith("pytest_dlcoverage"):
            modules[match.group(4)] = int(match.group(1)) / 1000
    return modules


def bench_startup(args: argparse.Namespace) -> dict:
    results = {}
    settings = {
        "all installed plugins": ({}, [], ["-p", "no:dlcoverage"]),
        "auto-loading off": (
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
            ["-p", "pytest_dlcoverage.plugin"],
            [],
        ),
    }
    with tempfile.TemporaryDirectory(prefix="dlcov-bench-startup-") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_trivial.py").write_text("def test_nothing():\n    pass\n")
        for label, (env, with_flags, without_flags) in settings.items():
            run_pytest(folder, with_flags, env)
            run_pytest(folder, without_flags, env)
            pairs = {"with": [], "without": []}
            for i in range(args.startup_pairs):
                order = ("with", "without") if i % 2 == 0 else ("without", "with")
                for name in order:
                    flags = with_flags if name == "with" else without_flags
                    pairs[name].append(run_pytest(folder, flags, env))
            entry = {}
            for measure in ("wall_s", "cpu_s"):
                alone = statistics.median(r[measure] for r in pairs["without"])
                deltas = [
                    1000 * (a[measure] - b[measure])
                    for a, b in zip(pairs["with"], pairs["without"], strict=True)
                ]
                entry[f"{measure[:-2]}_delta_ms"] = {
                    "median": statistics.median(deltas),
                    "runs": deltas,
                    "median_without_ms": 1000 * alone,
                }
            results[label] = entry
            print(
                f"start-up, {label}: plugin adds median {entry['wall_delta_ms']['median']:.0f} ms "
                f"wall, {entry['cpu_delta_ms']['median']:.0f} ms CPU over "
                f"{args.startup_pairs} pairs (pytest alone: "
                f"{entry['wall_delta_ms']['median_without_ms']:.0f} ms wall)   (target < 50 ms)",
                flush=True,
            )
    modules = plugin_import_ms()
    results["import_ms"] = modules
    print(f"  -X importtime, self ms per module: {modules} (sum {sum(modules.values()):.1f} ms)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--startup-pairs", type=int, default=20, help="start-up pairs (20)")
    parser.add_argument("--skip-suite", action="store_true", help="only the start-up cost")
    parser.add_argument("--skip-startup", action="store_true", help="only the suite")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    results = {"repeats": args.repeats}
    if not args.skip_startup:
        results["startup"] = bench_startup(args)
    if not args.skip_suite:
        results["suite"] = bench_suite(args)
    _common.report("bench_plugin", results, args.json)


if __name__ == "__main__":
    main()
