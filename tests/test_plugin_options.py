"""Parsing and checking of the plugin's option values (pytest_dlcoverage.options), in
process; the command line itself is exercised in test_plugin.py."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from pytest_dlcoverage.errors import DLCoverageError
from pytest_dlcoverage.options import (
    CRITERIA,
    OPTIONS,
    ReportSpec,
    parse_criteria,
    parse_fraction,
    parse_max_drop,
    parse_report,
    parse_threshold,
    resolve_enabled,
    resolve_settings,
)

CLI = Path("/work/cli")
INI = Path("/work/ini")
ROOT = Path("/work/root")


def settings(cli: dict | None = None, ini: dict | None = None, enabled: bool = True):
    return resolve_settings(enabled, cli or {}, ini or {}, cli_base=CLI, ini_base=INI, rootdir=ROOT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.6", Fraction(3, 5)),
        ("60%", Fraction(3, 5)),
        (" 37.5 % ", Fraction(3, 8)),
        ("0", Fraction(0)),
        ("1", Fraction(1)),
        ("100%", Fraction(1)),
        ("1/3", Fraction(1, 3)),
        ("0.33333333333333334", Fraction(33333333333333334, 10**17)),
    ],
)
def test_fraction_is_exact(text, expected):
    assert parse_fraction(text, "--x") == expected


@pytest.mark.parametrize("text", ["60", "1.01", "-0.1", "101%", "abc", "", "%", "nan", "inf"])
def test_fraction_outside_unit_interval_or_malformed_is_refused(text):
    with pytest.raises(DLCoverageError, match="--x"):
        parse_fraction(text, "--x")


def test_threshold_with_and_without_model():
    assert parse_threshold("nc:0.6").model is None
    t = parse_threshold("retrained.KMNC:25%")
    assert (t.model, t.criterion, t.required) == ("retrained", "kmnc", Fraction(1, 4))
    # Dots in a model name belong to the model; the last one separates the criterion.
    t = parse_threshold("resnet.v2.idc:0.1")
    assert (t.model, t.criterion) == ("resnet.v2", "idc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nc", "expected CRITERION:MIN"),
        ("nc:", "expected CRITERION:MIN"),
        ("lsc:0.5", "expected a criterion among"),
        (".nc:0.5", "model name before '.' is empty"),
        ("nc:1.5", r"expected a value in \[0, 1\]"),
    ],
)
def test_malformed_threshold_names_the_problem(text, message):
    with pytest.raises(DLCoverageError, match=message):
        parse_threshold(text)


def test_max_drop():
    d = parse_max_drop("nc:5%")
    assert (d.model, d.criterion, d.allowed) == (None, "nc", Fraction(1, 20))


def test_criteria_list():
    assert parse_criteria("NC, tknc,nc") == ("nc", "tknc")
    with pytest.raises(DLCoverageError, match="received 'nc,foo'"):
        parse_criteria("nc,foo")
    with pytest.raises(DLCoverageError):
        parse_criteria(" , ")


def test_report_specs(tmp_path):
    assert parse_report("term", tmp_path) == ReportSpec("term")
    assert parse_report("json:out/c.json", tmp_path) == ReportSpec("json", tmp_path / "out/c.json")
    assert parse_report("json", tmp_path) == ReportSpec("json", tmp_path / "dlcoverage.json")
    assert parse_report("html", tmp_path).dest == tmp_path / "dlcoverage_html"
    absolute = parse_report("markdown:/tmp/summary.md", tmp_path)
    assert absolute == ReportSpec("markdown", Path("/tmp/summary.md"))
    with pytest.raises(DLCoverageError, match="expected a report type among"):
        parse_report("xml:cov.xml", tmp_path)
    with pytest.raises(DLCoverageError, match="takes no destination"):
        parse_report("term:file.txt", tmp_path)


def test_enabled_precedence():
    assert resolve_enabled(on=False, off=False, ini=None) is False
    assert resolve_enabled(on=True, off=False, ini=None) is True
    assert resolve_enabled(on=False, off=False, ini=True) is True
    assert resolve_enabled(on=False, off=False, ini="true") is True
    # --no-dl-coverage wins over both.
    assert resolve_enabled(on=True, off=True, ini=True) is False


def test_defaults():
    s = settings()
    assert s.criteria == CRITERIA == ("nc", "kmnc", "nbc", "snac", "tknc", "idc")
    assert s.params == {}
    assert s.reports == (ReportSpec("term"),)
    assert s.terminal_report == "term"
    assert s.thresholds == () and s.max_drops == () and s.compare is None
    assert s.cache_dir == ROOT / ".dlcoverage"


def test_command_line_over_ini_over_default():
    ini = {
        "criteria": "nc,tknc",
        "tknc_k": "1",
        "nc_threshold": "0.5",
        "report": ["json:ini.json"],
        "cache_dir": "cache",
    }
    s = settings(cli={"tknc_k": "2"}, ini=ini)
    assert s.criteria == ("nc", "tknc")
    assert s.params == {"nc": {"threshold": 0.5}, "tknc": {"k": 2}}
    # Relative paths are relative to the place they were written in.
    assert s.reports == (ReportSpec("json", INI / "ini.json"),)
    assert s.cache_dir == INI / "cache"
    s = settings(cli={"report": ["json:cli.json"], "cache_dir": "c2"}, ini=ini)
    assert s.reports == (ReportSpec("json", CLI / "cli.json"),)
    assert s.cache_dir == CLI / "c2"


def test_empty_ini_values_count_as_unset():
    s = settings(ini={"criteria": "", "report": [], "fail_under": []})
    assert s.criteria == CRITERIA and s.reports == (ReportSpec("term"),)


def test_empty_report_value_disables_the_terminal_report():
    s = settings(cli={"report": [""]})
    assert s.reports == () and s.terminal_report is None
    s = settings(cli={"report": ["term", "term-verbose", "json"]})
    assert s.terminal_report == "term-verbose"
    assert [r.kind for r in s.file_reports] == ["json"]


def test_naming_any_report_replaces_the_default_and_lists_do_not_merge():
    # A file report alone, on the command line or in the ini file: no terminal report.
    for s in (settings(cli={"report": ["json"]}), settings(ini={"report": ["json"]})):
        assert [r.kind for r in s.reports] == ["json"] and s.terminal_report is None
    # Without a path, a file report goes to its default name, in the folder the value
    # was written in ("json:" with an empty path too).
    ini = {"report": ["term-verbose", "json", "markdown:m.md"]}
    s = settings(ini=ini)
    assert s.reports == (
        ReportSpec("term-verbose"),
        ReportSpec("json", INI / "dlcoverage.json"),
        ReportSpec("markdown", INI / "m.md"),
    )
    # A command-line list replaces the ini list as a whole.
    s = settings(cli={"report": ["json:", "html"]}, ini=ini)
    assert s.reports == (
        ReportSpec("json", CLI / "dlcoverage.json"),
        ReportSpec("html", CLI / "dlcoverage_html"),
    )
    assert [r.origin for r in s.reports] == [
        "--dl-coverage-report=json:",
        "--dl-coverage-report=html",
    ]
    assert settings(ini=ini).reports[2].origin == "dl_coverage_report=markdown:m.md"


def test_parameters_of_unmeasured_criteria_are_checked_then_left_out():
    s = settings(cli={"criteria": "nc", "kmnc_k": "10", "idc_layer": "dense"})
    assert s.params == {}
    with pytest.raises(DLCoverageError, match="--dl-coverage-kmnc-k: expected a positive integer"):
        settings(cli={"criteria": "nc", "kmnc_k": "0"})


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"nc_threshold": "1.5"}, r"--dl-coverage-nc-threshold: expected a number in \[0, 1\]"),
        ({"nc_threshold": "x"}, "--dl-coverage-nc-threshold"),
        ({"idc_m": "-3"}, "--dl-coverage-idc-m: expected a positive integer"),
        ({"tknc_k": "2.5"}, "--dl-coverage-tknc-k"),
        ({"idc_layer": " "}, "--dl-coverage-idc-layer: expected a layer name"),
        ({"criteria": "nc", "fail_under": ["kmnc:0.5"]}, "'kmnc', which is not measured"),
        ({"compare_fail": ["nc:0.01"]}, "needs an earlier report"),
    ],
)
def test_malformed_settings(cli, message):
    with pytest.raises(DLCoverageError, match=message):
        settings(cli=cli)


def test_ini_source_is_named_in_messages():
    with pytest.raises(DLCoverageError, match="dl_coverage_kmnc_k"):
        settings(ini={"kmnc_k": "many"})
    with pytest.raises(DLCoverageError, match="^dl_coverage_fail_under: 'idc:0.5' names"):
        settings(ini={"criteria": "nc", "fail_under": ["idc:0.5"]})
    with pytest.raises(DLCoverageError, match="^dl_coverage_compare_fail: 'idc:0.1' names"):
        settings(ini={"criteria": "nc", "compare_fail": ["idc:0.1"]})


def test_drop_limits_from_the_ini_file_wait_for_a_compared_report():
    s = settings(ini={"compare_fail": ["nc:0.01"]})
    assert s.compare is None and len(s.max_drops) == 1


def test_every_help_text_ends_with_its_default():
    for spec in OPTIONS:
        assert spec.full_help.endswith(f"(default: {spec.default_text})")
        assert spec.ini_name == spec.dest == "dl_coverage_" + spec.key


def test_criteria_names_match_the_engine():
    from pytest_dlcoverage.criteria import REGISTRY
    from pytest_dlcoverage.engine import DEFAULT_CRITERIA

    assert CRITERIA == DEFAULT_CRITERIA
    assert set(CRITERIA) <= set(REGISTRY)
