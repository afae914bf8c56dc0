"""Our neuron-coverage criteria against dnn-tip's (Weiss and Tonella, ISSTA 2022), on the
same activations: the values criterion by criterion, and the throughput of the updates.

Both tools get the same numpy activations: the channel means of ResNet32's measured
layers (every post-activation ReLU, 1,136 neurons in 31 layers) over CIFAR-10 test
images, and the same training ranges (per-neuron minimum, maximum and standard
deviation over CIFAR-10 training images, from our training profile). dnn-tip takes a
list of per-layer arrays; it gets the per-layer columns of the same matrix, so both
count one neuron per channel.

dnn-tip returns a per-input profile (which cells each input covers); the coverage of a
set of inputs is the union of their profiles, kept here as a running `any` per batch,
which is what a streaming user of dnn-tip would do. Its parameters are set to ours
where the definitions allow: NAC threshold as NC's raw threshold, KMNC sections k =
1000, NBC and SNAC boundary scaler 0 (boundaries at the training minimum and maximum),
TKNC top 3 per layer.

Target: our updates at least 3 times dnn-tip's throughput over the same batches.

The model is untrained (the comparison is of the criteria, given activations); a
trained one changes the numbers, not the definitions.

Usage: python benchmarks/bench_peer_dnntip.py [--n 3000] [--train 2000] [--repeats 3]
           [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
from _data import load_cifar10

BATCH_SIZE = 128
KMNC_SECTIONS = 1000
TOP_K = 3
NC_THRESHOLDS = (0.0, 0.75)


def activations(meter, x: np.ndarray) -> np.ndarray:
    """Returns the measured neurons' values for `x`, `(n, neurons)` float32."""
    return np.concatenate([b.values for _, _, b in meter._capture.stream(x, batch_size=128)])


class DnnTip:
    """dnn-tip's five criteria over a fixed layout, with a running union per criterion."""

    def __init__(self, layout, profile) -> None:
        from dnn_tip import neuron_coverage as nc

        self.slices = list(layout.slices().values())
        per_layer = lambda a: [a[s] for s in self.slices]  # noqa: E731
        low, high, std = profile.low, profile.high, profile.ranges.std
        self.methods = {
            **{f"nc raw {t}": nc.NAC(t) for t in NC_THRESHOLDS},
            "kmnc": nc.KMNC(per_layer(low), per_layer(high), KMNC_SECTIONS),
            "nbc": nc.NBC(per_layer(low), per_layer(high), per_layer(std), 0.0),
            "snac": nc.SNAC(per_layer(high), per_layer(std), 0.0),
            "tknc": nc.TKNC(TOP_K),
        }
        self.union: dict[str, np.ndarray | None] = dict.fromkeys(self.methods)

    def update(self, name: str, values: np.ndarray) -> None:
        _, profiles = self.methods[name]([values[:, s] for s in self.slices])
        seen = profiles.any(axis=0)
        self.union[name] = seen if self.union[name] is None else self.union[name] | seen

    def coverage(self, name: str) -> tuple[int, int]:
        union = self.union[name]
        return int(np.count_nonzero(union)), int(union.size)


def ours(meter, layout, profile) -> dict:
    """Returns our criteria with the parameters matched to dnn-tip's, plus default NC."""
    from pytest_dlcoverage.criteria import REGISTRY

    states = {
        f"nc raw {t}": REGISTRY["nc"](layout, profile, threshold=t, scaled=False)
        for t in NC_THRESHOLDS
    }
    states["kmnc"] = REGISTRY["kmnc"](layout, profile, k=KMNC_SECTIONS)
    states["nbc"] = REGISTRY["nbc"](layout, profile)
    states["snac"] = REGISTRY["snac"](layout, profile)
    states["tknc"] = REGISTRY["tknc"](layout, profile, k=TOP_K)
    states["nc scaled 0.75 (ours only)"] = REGISTRY["nc"](layout, profile)
    return states


def compare_values(meter, values: np.ndarray, label: str) -> dict:
    """Measures `values` with both tools; returns and prints covered/total per criterion."""
    from pytest_dlcoverage.layout import ActivationBatch

    layout, profile = meter.layout, meter.profile_
    mine, theirs = ours(meter, layout, profile), DnnTip(layout, profile)
    for start in range(0, len(values), BATCH_SIZE):
        chunk = values[start : start + BATCH_SIZE]
        for state in mine.values():
            state.update(ActivationBatch(layout, chunk))
        for name in theirs.methods:
            theirs.update(name, chunk)

    print(f"values on {label} ({len(values)} inputs): covered / total")
    print(f"  {'criterion':<28} {'ours':>22} {'dnn-tip':>22}")
    table = {}
    for name, state in mine.items():
        cov = state.coverage()
        row = {"ours": [cov.covered, cov.total]}
        text_theirs = ""
        if name in theirs.methods:
            covered, total = theirs.coverage(name)
            row["dnn_tip"] = [covered, total]
            text_theirs = f"{covered}/{total} ({100 * covered / total:.2f}%)"
        table[name] = row
        text_ours = f"{cov.covered}/{cov.total} ({100 * cov.covered / cov.total:.2f}%)"
        print(f"  {name:<28} {text_ours:>22} {text_theirs:>22}")
    return table


def boundary_ties(meter, values: np.ndarray) -> dict:
    """Counts where the two tools' rules part: neurons with a zero-width training range,
    values exactly on a training minimum or maximum of the other neurons, and (input,
    layer) pairs whose per-layer top 3 is decided by a tie."""
    low, high = meter.profile_.low, meter.profile_.high
    flat = low == high
    ties = 0
    for s in meter.layout.slices().values():
        layer = -np.sort(-values[:, s], axis=1)
        if layer.shape[1] > TOP_K:
            ties += int(np.count_nonzero(layer[:, TOP_K - 1] == layer[:, TOP_K]))
    return {
        "neurons with low == high (constant on the training images)": int(flat.sum()),
        "values == low, other neurons": int(np.count_nonzero((values == low) & ~flat)),
        "values == high, other neurons": int(np.count_nonzero((values == high) & ~flat)),
        "neurons whose high is reached": int(np.count_nonzero(((values == high) & ~flat).any(0))),
        "(input, layer) pairs with a tie at the top-3 cut": ties,
    }


def throughput(meter, values: np.ndarray, repeats: int) -> dict:
    """Times both tools' updates over the same batches, interleaved; returns the times."""
    from pytest_dlcoverage.layout import ActivationBatch

    layout, profile = meter.layout, meter.profile_
    chunks = [values[i : i + BATCH_SIZE] for i in range(0, len(values), BATCH_SIZE)]
    batches = [ActivationBatch(layout, c) for c in chunks]
    names = ["nc raw 0.75", "kmnc", "nbc", "snac", "tknc"]

    def run_ours(only: str | None = None) -> None:
        states = ours(meter, layout, profile)
        for batch in batches:
            for name in [only] if only else names:
                states[name].update(batch)

    def run_theirs(only: str | None = None) -> None:
        tool = DnnTip(layout, profile)
        for chunk in chunks:
            for name in [only] if only else names:
                tool.update(name, chunk)

    times = _common.interleaved(
        {"ours (5 criteria)": run_ours, "dnn-tip (5 criteria)": run_theirs}, repeats
    )
    ratio = _common.both_ratios(times, "dnn-tip (5 criteria)", "ours (5 criteria)", ">= 3x")

    per_criterion = {}
    print(f"  per criterion, one pass each, inputs per second:  {'ours':>12} {'dnn-tip':>12}")
    for name in names:
        start = time.perf_counter()
        run_ours(name)
        mine = time.perf_counter() - start
        start = time.perf_counter()
        run_theirs(name)
        theirs = time.perf_counter() - start
        per_criterion[name] = {"ours_s": mine, "dnn_tip_s": theirs}
        print(f"  {name:<48} {len(values) / mine:12.0f} {len(values) / theirs:12.0f}")
    return {"times_s": times, "dnn_tip_over_ours": ratio, "per_criterion": per_criterion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3_000, help="test inputs (default 3000)")
    parser.add_argument("--train", type=int, default=2_000, help="profile inputs (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from pytest_dlcoverage.engine import CoverageMeter

    model = _common.build_resnet32()
    x_train, _ = load_cifar10("train", args.train)
    x_test, _ = load_cifar10("test", args.n)
    criteria = ("nc", "kmnc", "nbc", "snac", "tknc")
    meter = CoverageMeter(model, criteria=criteria, progress=False).fit(x_train)
    train_values, test_values = activations(meter, x_train), activations(meter, x_test)
    print(f"ResNet32: {meter.layout.size} neurons in {len(meter.layout.names)} layers")

    results = {"n": args.n, "train": args.train, "repeats": args.repeats}
    results["values_test"] = compare_values(meter, test_values, "test images")
    results["values_train"] = compare_values(meter, train_values, "the profile's own images")
    results["boundary_cases_test"] = boundary_ties(meter, test_values)
    results["boundary_cases_train"] = boundary_ties(meter, train_values)
    for label in ("test", "train"):
        print(f"boundary cases, {label} images:")
        for what, count in results[f"boundary_cases_{label}"].items():
            print(f"  {what:<60} {count:>8}")
    results["throughput"] = throughput(meter, test_values, args.repeats)
    _common.report("bench_peer_dnntip", results, args.json)


if __name__ == "__main__":
    main()
