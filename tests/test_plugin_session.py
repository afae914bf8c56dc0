"""The session's measurements, verdicts, correlation, comparison and report formats
(pytest_dlcoverage.session and pytest_dlcoverage.report), in process.

States are NC (raw mode) and TKNC states fed hand-made activations, so every expected
number below is counted by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from pytest_dlcoverage.criteria.nc import NeuronCoverage
from pytest_dlcoverage.criteria.tknc import TopKNeuronCoverage
from pytest_dlcoverage.errors import DLCoverageError
from pytest_dlcoverage.layout import ActivationBatch, NeuronLayout
from pytest_dlcoverage.options import MaxDrop, ReportSpec, Threshold
from pytest_dlcoverage.report import html, jsonreport, markdown, percent, term, write_file_reports
from pytest_dlcoverage.results import Coverage
from pytest_dlcoverage.session import Measurements, build_report, correlate

LAYOUT = NeuronLayout(("conv", "dense"), (3, 5))  # 8 neurons: 0-2 conv, 3-7 dense
CRITERIA = ("nc", "tknc")


def new_states(layout: NeuronLayout = LAYOUT) -> dict:
    """NC covers a neuron whose raw value exceeds 0.5; TKNC the top neuron of each layer."""
    return {
        "nc": NeuronCoverage(layout, None, threshold=0.5, scaled=False),
        "tknc": TopKNeuronCoverage(layout, None, k=1),
    }


def feed(m: Measurements, model: str, suite: str, active: list[list[int]], correct=0, labelled=0):
    """Feeds one input per entry of `active`: value 1 on those neurons, 0 elsewhere."""
    values = np.zeros((len(active), LAYOUT.size), dtype=np.float32)
    for row, neurons in enumerate(active):
        values[row, neurons] = 1.0
    record = m.suite(model, suite, new_states)
    for state in record.states.values():
        state.update(ActivationBatch(LAYOUT, values))
    record.inputs += len(active)
    record.correct += correct
    record.labelled += labelled


def study(m: Measurements | None = None) -> Measurements:
    """Two models, base and retrained (baseline base), with two suites each."""
    m = m or Measurements()
    m.add_model("base", None, new_states())
    m.add_model("retrained", "base", new_states())
    feed(m, "base", "original", [[0], [1, 3]], correct=1, labelled=2)
    feed(m, "base", "rotation", [[1, 5]], correct=0, labelled=1)
    feed(m, "retrained", "original", [[0, 4], [2, 6]], correct=2, labelled=2)
    feed(m, "retrained", "rotation", [[7]], correct=1, labelled=2)
    return m


# -- measurements and report model -------------------------------------------------------


def test_model_coverage_is_the_union_of_its_suites():
    report = build_report(study(), CRITERIA)
    base, retrained = report.models
    # base: NC neurons {0,1,3} u {1,5} = {0,1,3,5}
    assert base.coverage["nc"] == Coverage(4, 8)
    assert [s.name for s in base.suites] == ["original", "rotation"]
    assert base.suites[0].coverage["nc"] == Coverage(3, 8)
    # TKNC k=1: the stable arg-sort puts the first of equal values on top, so an input
    # with no active neuron in a layer covers that layer's first neuron.
    # base inputs: [0] -> conv 0, dense 3; [1,3] -> conv 1, dense 3; [1,5] -> conv 1, dense 5
    assert base.coverage["tknc"] == Coverage(4, 8)
    assert base.inputs == 3
    assert base.layers["conv"]["nc"] == Coverage(2, 3)
    assert base.layers["dense"]["nc"] == Coverage(2, 5)
    # retrained: NC {0,4,2,6,7} = 5 of 8, so the delta is 5/8 - 4/8.
    assert retrained.coverage["nc"] == Coverage(5, 8)
    assert retrained.baseline_found
    assert retrained.delta["nc"] == Fraction(1, 8)
    assert retrained.suites[1].delta["nc"] == Fraction(1, 8) - Fraction(2, 8)
    assert base.delta == {}
    assert retrained.suites[1].accuracy == 0.5


def test_a_model_without_inputs_still_has_its_totals():
    m = Measurements()
    m.add_model("idle", None, new_states())
    (model,) = build_report(m, CRITERIA).models
    assert model.coverage["nc"] == Coverage(0, 8)
    assert model.suites == ()


def test_a_baseline_that_was_not_tracked_gives_no_delta():
    m = Measurements()
    m.add_model("retrained", "base", new_states())
    (model,) = build_report(m, CRITERIA).models
    assert model.baseline == "base" and not model.baseline_found and model.delta == {}


def test_baseline_must_stay_the_same():
    m = study()
    with pytest.raises(DLCoverageError, match="baseline"):
        m.add_model("retrained", "other", new_states())
    with pytest.raises(DLCoverageError, match="its own baseline"):
        m.add_model("selfish", "selfish", new_states())


# -- thresholds -----------------------------------------------------------------------------


def thresholds(*texts: str) -> list[Threshold]:
    from pytest_dlcoverage.options import parse_threshold

    return [parse_threshold(t) for t in texts]


def test_threshold_exactly_at_the_coverage_passes():
    # base covers NC 4/8 = 1/2 exactly.
    report = build_report(
        study(), CRITERIA, thresholds("base.nc:0.5", "base.nc:50%", "base.nc:0.5000001")
    )
    assert [v.passed for v in report.verdicts] == [True, True, False]
    failure = report.failures[0]
    assert failure.measured == Fraction(1, 2) and failure.required == Fraction(5000001, 10**7)
    message = failure.message()
    assert "'base'" in message and "NC" in message and "50%" in message and "50" in message
    assert report.failed


def test_verdict_uses_exact_values_where_floats_would_tie():
    layout = NeuronLayout(("only",), (3,))
    state = NeuronCoverage(layout, None, threshold=0.5, scaled=False)
    state.update(ActivationBatch(layout, np.array([[1.0, 0.0, 0.0]], dtype=np.float32)))
    m = Measurements()
    m.add_model("m", None, {"nc": state})
    record = m.suite("m", "s", lambda: {"nc": state.empty_copy()})
    record.states["nc"].merge(state)
    above = "0.33333333333333334"  # just above 1/3, but the same double as 1/3
    assert float(Fraction(above)) == 1 / 3
    report = build_report(m, ("nc",), thresholds(f"nc:{above}", "nc:0.3333333333333333"))
    assert [v.passed for v in report.verdicts] == [False, True]


def test_threshold_without_a_model_to_check_fails():
    report = build_report(study(), CRITERIA, thresholds("missing.nc:0.1"))
    (verdict,) = report.verdicts
    assert not verdict.passed and "no model of this name" in verdict.message()
    report = build_report(Measurements(), CRITERIA, thresholds("nc:0.1"))
    (verdict,) = report.verdicts
    assert verdict.model == "*" and not verdict.passed


def test_threshold_without_model_applies_to_every_model():
    report = build_report(study(), CRITERIA, thresholds("nc:0.55"))
    assert [(v.model, v.passed) for v in report.verdicts] == [
        ("base", False),
        ("retrained", True),
    ]


def test_missing_data_fails_the_report():
    m = study()
    m.missing.append("worker gw1 returned no coverage data")
    assert build_report(m, CRITERIA).failed


# -- correlation ----------------------------------------------------------------------------


def test_correlation_agrees_with_an_independent_computation():
    m = Measurements()
    m.add_model("a", None, new_states())
    m.add_model("b", None, new_states())
    feed(m, "a", "s1", [[0]], correct=1, labelled=4)  # acc 0.25, NC 1/8
    feed(m, "a", "s2", [[0, 1, 3]], correct=2, labelled=4)  # acc 0.5, NC 3/8
    feed(m, "b", "s1", [[0, 1]], correct=3, labelled=4)  # acc 0.75, NC 2/8
    feed(m, "b", "s2", [[0, 1, 2, 3, 4, 5]], correct=4, labelled=4)  # acc 1, NC 6/8
    feed(m, "b", "unlabelled", [[7]])  # no accuracy: dropped
    report = build_report(m, CRITERIA)
    nc = report.correlation[0]
    assert (nc.criterion, nc.n, nc.dropped, nc.reason) == ("nc", 4, 1, None)

    acc = np.array([0.25, 0.5, 0.75, 1.0])
    cov = np.array([1, 3, 2, 6]) / 8
    r = np.corrcoef(acc, cov)[0, 1]
    t = r * np.sqrt((len(acc) - 2) / (1 - r**2))
    p = 2 * stats.t.sf(abs(t), len(acc) - 2)
    ranks_acc = np.argsort(np.argsort(acc))
    ranks_cov = np.argsort(np.argsort(cov))
    rho = np.corrcoef(ranks_acc, ranks_cov)[0, 1]
    assert nc.pearson_r == pytest.approx(r, abs=1e-12)
    assert nc.p_value == pytest.approx(p, rel=1e-9)
    assert nc.spearman_rho == pytest.approx(rho, abs=1e-12)


def test_correlation_says_why_it_has_no_value():
    m = Measurements()
    m.add_model("a", None, new_states())
    feed(m, "a", "s1", [[0]], correct=1, labelled=2)
    feed(m, "a", "s2", [[1, 2]], correct=1, labelled=2)
    model = build_report(m, CRITERIA).models
    few = correlate(model, "nc")
    assert few.pearson_r is None and "at least 3 pairs" in few.reason and few.n == 2
    assert few.short_reason == "needs 3 pairs, has 2"
    feed(m, "a", "s3", [[1, 2, 4]], correct=2, labelled=4)
    constant = correlate(build_report(m, CRITERIA).models, "nc")
    assert constant.pearson_r is None and "accuracy is the same" in constant.reason
    assert constant.short_reason == "constant accuracy"


def test_a_correlation_row_without_coefficients_says_why_in_every_format():
    m = Measurements()
    m.add_model("a", None, new_states())
    # NC covers 1, 2, 3 of 8 neurons; TKNC (k=1) covers 2 of 8 in every suite.
    feed(m, "a", "s1", [[0]], correct=1, labelled=2)
    feed(m, "a", "s2", [[1, 2]], correct=2, labelled=2)
    feed(m, "a", "s3", [[1, 2, 4]], correct=0, labelled=2)
    constant = build_report(m, CRITERIA)
    few = Measurements()
    few.add_model("a", None, new_states())
    feed(few, "a", "s1", [[0]], correct=1, labelled=2)
    feed(few, "a", "s2", [[1, 2]], correct=2, labelled=2)
    few = build_report(few, CRITERIA)

    text = term.render(constant, markup=False, width=80)
    assert re.search(r"^NC\s+-?\d\.\d{3}\s+\S+\s+-?\d\.\d{3}\s+3\s+0$", text, re.MULTILINE)
    assert re.search(r"^TKNC\s+constant coverage\s+3\s+0$", text, re.MULTILINE)
    text = term.render(few, markup=False, width=80)
    assert re.search(r"^NC\s+needs 3 pairs, has 2\s+2\s+0$", text, re.MULTILINE)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "\x1b" in term.render(few, markup=True, width=80)  # the reason is dimmed

    assert "| TKNC | *constant coverage* |  |  | 3 | 0 |" in markdown.render(constant)
    assert "| NC | *needs 3 pairs, has 2* |  |  | 2 | 0 |" in markdown.render(few)
    page = html.render(few)
    assert '<td class="note" colspan="3">needs 3 pairs, has 2</td><td>2</td><td>0</td>' in page
    # The row says why; no "n/a" stands for the coefficients, no note repeats it below.
    for rendered in (term.render(few), markdown.render(few), page):
        assert "n/a" not in rendered and "no correlation" not in rendered


# -- between processes ----------------------------------------------------------------------


def test_merged_payloads_equal_one_process():
    single = build_report(study(), CRITERIA)

    worker1, worker2 = Measurements(), Measurements()
    for w in (worker1, worker2):
        w.add_model("base", None, new_states())
        w.add_model("retrained", "base", new_states())
    # The same inputs, spread over two workers, one suite split between them.
    feed(worker1, "base", "original", [[0]], correct=1, labelled=1)
    feed(worker2, "base", "original", [[1, 3]], correct=0, labelled=1)
    feed(worker2, "base", "rotation", [[1, 5]], correct=0, labelled=1)
    feed(worker1, "retrained", "original", [[0, 4], [2, 6]], correct=2, labelled=2)
    feed(worker2, "retrained", "rotation", [[7]], correct=1, labelled=2)

    controller = Measurements()
    for name, w in (("gw0", worker1), ("gw1", worker2)):
        # The payload travels as plain data.
        controller.merge_payload(json.loads(json.dumps(w.to_payload())), name)
    merged = build_report(controller, CRITERIA)
    assert jsonreport.to_dict(merged) == jsonreport.to_dict(single)


def test_a_payload_of_another_model_under_the_same_name_is_refused():
    controller = study()
    other = Measurements()
    other.add_model("base", None, {"nc": NeuronCoverage(LAYOUT, None, threshold=0.9)})
    with pytest.raises(DLCoverageError, match="'base'"):
        controller.merge_payload(other.to_payload(), "worker gw3")
    with pytest.raises(DLCoverageError, match="format"):
        controller.merge_payload({"format": 99, "models": {}}, "worker gw3")


# -- comparison ------------------------------------------------------------------------------


def previous_report(tmp_path, edit=None):
    data = jsonreport.to_dict(build_report(study(), CRITERIA))
    if edit:
        edit(data)
    path = tmp_path / "previous.json"
    path.write_text(json.dumps(data))
    return jsonreport.load_previous(path)


def test_comparison_and_largest_allowed_fall(tmp_path):
    def edit(data):
        data["models"]["base"]["criteria"]["nc"]["covered"] = 6  # was 4 of 8
        data["models"]["gone"] = {"criteria": {"nc": {"covered": 1, "total": 2}}}

    previous = previous_report(tmp_path, edit)
    drops = [
        MaxDrop(None, "nc", Fraction(1, 4), "nc:0.25"),
        MaxDrop("base", "nc", Fraction(1, 5), ""),
    ]
    report = build_report(study(), CRITERIA, previous=previous, max_drops=drops)
    changes = {(c.model, c.criterion): c for c in report.comparison.changes}
    assert changes[("base", "nc")].change == Fraction(-2, 8)
    assert changes[("retrained", "nc")].change == 0
    assert changes[("gone", "nc")].after is None and changes[("gone", "nc")].change is None
    # A fall exactly at the limit passes; one above it fails.
    verdicts = [(v.model, v.passed, v.measured) for v in report.verdicts]
    assert verdicts == [
        ("base", True, Fraction(1, 4)),
        ("retrained", True, Fraction(0)),
        ("base", False, Fraction(1, 4)),
    ]
    assert "fell by 25.00 pp" in report.failures[0].message()


def test_comparison_flags_other_settings(tmp_path):
    def edit(data):
        data["models"]["base"]["params"]["nc"]["threshold"] = 0.75

    previous = previous_report(tmp_path, edit)
    report = build_report(
        study(), CRITERIA, previous=previous, max_drops=[MaxDrop(None, "nc", Fraction(1), "")]
    )
    change = next(c for c in report.comparison.changes if c.model == "base" and c.criterion == "nc")
    assert "0.75" in change.note and change.change is None
    base_verdict = next(v for v in report.verdicts if v.model == "base")
    assert not base_verdict.passed and "cannot be checked" in base_verdict.reason


def test_a_fall_limit_without_a_model_in_both_reports_fails(tmp_path):
    # The compared report holds other models than this run tracked.
    def edit(data):
        data["models"] = {"old_" + name: model for name, model in data["models"].items()}

    previous = previous_report(tmp_path, edit)
    drops = [MaxDrop(None, "nc", Fraction(1, 10), "nc:0.1")]
    report = build_report(study(), CRITERIA, previous=previous, max_drops=drops)
    (verdict,) = report.verdicts
    assert (verdict.model, verdict.passed, verdict.measured) == ("*", False, None)
    assert "no model was measured both in this run and in the compared report" in (
        verdict.message()
    )
    assert report.failed
    (entry,) = jsonreport.to_dict(report)["thresholds"]
    assert entry["model"] == "*" and entry["passed"] is False and "no model" in entry["reason"]
    assert "| * | NC | **FAIL** |" in markdown.render(report)
    # A run that tracked no model at all has nothing to compare either.
    report = build_report(Measurements(), CRITERIA, previous=previous, max_drops=drops)
    assert [(v.model, v.passed) for v in report.verdicts] == [("*", False)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("{not json", "is not a JSON file"),
        ('{"models": {}}', "is not a pytest-dlcoverage JSON report"),
        ('{"schema": 2, "models": {}}', "schema 2"),
        ('{"schema": 1, "models": {"m": {"criteria": {"nc": {"covered": 1}}}}}', "malformed"),
        # JSON's true equals 1 in Python, and "1" is no number: neither is schema 1.
        ('{"schema": true, "models": {}}', r"schema true;.*reads schema 1 \(an integer\)"),
        ('{"schema": "1", "models": {}}', r"schema \"1\";"),
        ('{"schema": 1.0, "models": {}}', r"schema 1.0;"),
    ],
)
def test_unusable_compared_reports_are_refused(tmp_path, content, message):
    path = tmp_path / "prev.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DLCoverageError, match=message):
        jsonreport.load_previous(path)


@pytest.mark.parametrize(
    ("covered", "total", "message"),
    [
        # Neither truncated nor converted: a count that is not an integer is refused.
        (2.9, 28, r'models\["m"\].criteria\["nc"\].covered: .*non-negative integer; received 2.9'),
        (2, "28", r'\["nc"\].total: expected a non-negative integer; received "28"'),
        (True, 28, r"\.covered: expected a non-negative integer; received true"),
        (2, False, r"\.total: expected a non-negative integer; received false"),
        (-1, 28, r"\.covered: expected a non-negative integer; received -1"),
        (None, 28, r"\.covered: expected a non-negative integer; received null"),
        (29, 28, r'\["nc"\]: expected covered <= total; received covered=29, total=28'),
    ],
)
def test_compared_counts_must_be_counts(tmp_path, covered, total, message):
    path = tmp_path / "prev.json"
    entry = {"covered": covered, "total": total}
    path.write_text(json.dumps({"schema": 1, "models": {"m": {"criteria": {"nc": entry}}}}))
    with pytest.raises(DLCoverageError, match=message):
        jsonreport.load_previous(path)


def test_a_malformed_compared_report_is_a_usage_error(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    previous = pytester.path / "previous.json"
    entry = {"covered": 2.9, "total": "28"}
    previous.write_text(json.dumps({"schema": 1, "models": {"m": {"criteria": {"nc": entry}}}}))
    result = pytester.runpytest("--dl-coverage", f"--dl-coverage-compare={previous}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = 'models["m"].criteria["nc"].covered: expected a non-negative integer; received 2.9'
    assert expected in result.stderr.str()


# -- report formats ---------------------------------------------------------------------------


SUITE_ID = "tests/test_study.py::test_rotation[rotation-15-degrees-and-more]"


def long_named_report():
    m = study()
    name = "a_model_with_a_rather_long_name_for_a_terminal_of_eighty_columns"
    m.add_model(name, "base", new_states())
    feed(m, name, SUITE_ID, [[1]], 1, 1)
    return build_report(m, CRITERIA, thresholds("nc:0.5"))


def test_plain_terminal_report_fits_80_columns_in_ascii():
    for verbose in (False, True):
        text = term.render(long_named_report(), verbose=verbose, markup=False, width=80)
        assert max(len(line) for line in text.splitlines()) <= 80
        assert text.isascii() and "\x1b" not in text
    assert "per suite" in text and "per layer" in text
    assert re.search(r"NC\s+4/8\s+50%", text)
    assert "Pearson r" in text and "Thresholds" in text and "FAIL" in text


def test_terminal_report_in_colour():
    text = term.render(long_named_report(), markup=True, width=80)
    assert "\x1b[" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert max(len(line) for line in plain.splitlines()) <= 80


def suite_cell_lines(text: str) -> list[str]:
    """Returns the first column of the rows of the long-named model's suite table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Suite")) + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return [re.split(r"\s{2,}", lines[i].strip())[0] for i in range(start, end)]


@pytest.mark.parametrize("width", [80, 60])
def test_terminal_suite_ids_are_whole_and_wrap_after_separators(width):
    text = term.render(long_named_report(), verbose=True, markup=False, width=width)
    cells = suite_cell_lines(text)
    # Every character of the parametrized id is shown ("[...]" is not read as markup).
    assert "".join(cells) == SUITE_ID
    # The id wraps after "::" where the rest fits the column; a part longer than the
    # column (at 60 columns, the test name) folds inside.
    assert cells[0] == "tests/test_study.py::"
    if width == 80:
        assert cells[1:] == ["test_rotation[rotation-15-degrees-and-more]"]


def test_counts_are_singular_for_one():
    report = long_named_report()
    for text in (
        term.render(report, markup=False, width=80),
        markdown.render(report),
        html.render(report),
    ):
        assert re.search(r"1 input\s+in 1 suite\b", text)
        assert "1 inputs" not in text and "1 suites" not in text
        assert "3 inputs in 2 suites" in text


def test_json_report_layout(tmp_path):
    path = jsonreport.write(
        build_report(study(), CRITERIA, thresholds("base.nc:0.5")), tmp_path / "r.json"
    )
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    base = data["models"]["base"]
    assert base["baseline"] is None and data["models"]["retrained"]["baseline"] == "base"
    assert base["criteria"]["nc"] == {"covered": 4, "total": 8, "coverage": 0.5}
    assert base["suites"]["rotation"] == {
        "inputs": 1,
        "accuracy": 0.0,
        "correct": 0,
        "labelled": 1,
        "criteria": {
            "nc": {"covered": 2, "total": 8, "coverage": 0.25},
            "tknc": {"covered": 2, "total": 8, "coverage": 0.25},
        },
        "delta": {},
    }
    assert data["models"]["retrained"]["delta"]["nc"] == 0.125
    assert set(data["correlation"]["nc"]) >= {
        "pearson_r",
        "p_value",
        "spearman_rho",
        "n",
        "dropped",
    }
    assert data["thresholds"] == [
        {
            "kind": "fail-under",
            "model": "base",
            "criterion": "nc",
            "required": 0.5,
            "measured": 0.5,
            "passed": True,
            "reason": None,
        }
    ]


def test_markdown_report_appends(tmp_path):
    path = tmp_path / "summary.md"
    path.write_text("# Job summary\nearlier step")
    report = build_report(study(), CRITERIA, thresholds("nc:0.6"))
    markdown.write(report, path)
    markdown.write(report, path)
    text = path.read_text()
    assert text.startswith("# Job summary\nearlier step\n\n## DL coverage")
    assert text.count("## DL coverage") == 2
    assert "| NC | 4/8 | 50% |" in text
    assert "**Coverage checks failed:** 1 threshold not met." in text


def test_html_report_is_self_contained(tmp_path):
    path = html.write(build_report(study(), CRITERIA, thresholds("nc:0.5")), tmp_path / "site")
    page = path.read_text()
    assert path.name == "index.html"
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2  # coverage against accuracy, deltas against the baseline
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "<link" not in page and "<script" not in page
    assert "<td>4/8</td>" in page


def test_delta_plot_draws_no_bar_for_an_undefined_delta_and_labels_like_the_tables():
    report = build_report(study(), CRITERIA)
    base, retrained = report.models
    # NC's delta undefined (as for a criterion without items); TKNC's tiny but not 0.
    retrained = dataclasses.replace(retrained, delta={"nc": None, "tknc": Fraction(1, 10**6)})
    figure = html.delta_figure(dataclasses.replace(report, models=(base, retrained)))
    (ax,) = figure.axes
    bars = ax.patches
    assert len(bars) == 1 and bars[0].get_x() < 1 < bars[0].get_x() + bars[0].get_width()
    labels = {text.get_text(): text for text in ax.texts}
    assert set(labels) == {"n/a", "+<0.01 pp"}
    # The "n/a" stands on the zero line at NC, inside the drawn area.
    x, y = labels["n/a"].xy
    assert (x, y) == (0, 0) and ax.get_xlim()[0] < x < ax.get_xlim()[1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["retrained vs base"]


def test_a_writer_that_fails_in_any_way_does_not_stop_the_others(tmp_path, monkeypatch):
    def broken(report, path):
        raise ValueError("Out of range float values are not JSON compliant")

    monkeypatch.setattr(jsonreport, "write", broken)
    specs = (ReportSpec("json", tmp_path / "r.json"), ReportSpec("markdown", tmp_path / "ok.md"))
    outcomes = write_file_reports(build_report(study(), CRITERIA), specs)
    assert [o.path for o in outcomes] == [None, tmp_path / "ok.md"]
    assert isinstance(outcomes[0].error, ValueError)
    assert outcomes[0].message() == (
        f"cannot write json report to {tmp_path / 'r.json'}: "
        "ValueError: Out of range float values are not JSON compliant"
    )


def test_every_report_is_tried_and_each_failure_is_kept(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    specs = (
        ReportSpec("json", blocker / "r.json"),
        ReportSpec("markdown", tmp_path / "ok.md"),
        ReportSpec("html", blocker / "site"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # writing reports warns of nothing itself
        outcomes = write_file_reports(build_report(study(), CRITERIA), specs)
    assert [(o.spec, o.path) for o in outcomes] == [
        (specs[0], None),
        (specs[1], tmp_path / "ok.md"),
        (specs[2], None),
    ]
    assert (tmp_path / "ok.md").exists()
    assert isinstance(outcomes[0].error, OSError)
    assert outcomes[0].message().startswith(f"cannot write json report to {blocker / 'r.json'}: ")
    assert outcomes[1].message() == f"markdown report written to {tmp_path / 'ok.md'}"


def test_percent_never_rounds_to_0_or_100():
    assert percent(Fraction(1, 10**6)) == "<0.01%"
    assert percent(Fraction(10**6 - 1, 10**6)) == ">99.99%"
    assert percent(Fraction(3, 8)) == "37.5%"
    assert percent(None) == "n/a"
