"""The terminal report, drawn with rich.

Tables fit 80 columns (long suite and layer names wrap). On a terminal with colour the
tables use box characters and colour; otherwise (a file, a CI log) they are plain
ASCII text.
"""

from __future__ import annotations

import io
from fractions import Fraction

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import (
    ModelResult,
    Report,
    correlation_notes,
    coverage_cell,
    coverage_percent,
    distinct_texts,
    number,
    p_value_text,
    percent,
    points,
)

# Dashes under the header and nothing else, so that plain text reads well in a log.
PLAIN = box.Box(
    "    \n"  # top
    "    \n"  # head
    " -- \n"  # head row
    "    \n"  # mid
    "    \n"  # row
    " -- \n"  # foot row
    "    \n"  # foot
    "    \n",  # bottom
    ascii=True,
)


class _Style:
    """How the tables look: colour and box characters, or plain text."""

    def __init__(self, markup: bool) -> None:
        self.markup = markup

    def table(self) -> Table:
        return Table(
            box=box.SIMPLE_HEAD if self.markup else PLAIN,
            header_style="bold" if self.markup else "",
            pad_edge=False,
            show_edge=False,
        )

    def titled(self, title: str, table: Table) -> Group:
        return Group(Text(title, style="bold" if self.markup else ""), table)

    def delta(self, value: Fraction | None) -> Text:
        text = Text(points(value, signed=True))
        if self.markup and value:
            text.stylize("green" if value > 0 else "red")
        return text

    def verdict(self, passed: bool) -> Text:
        text = Text("pass" if passed else "FAIL")
        if self.markup:
            text.stylize("green" if passed else "bold red")
        return text

    def alarm(self, text: str) -> Text:
        return Text(text, style="bold red" if self.markup else "")


def renderables(report: Report, verbose: bool = False, markup: bool = False) -> list:
    """Returns the rich renderables of the report, in display order.

    Args:
        report: the session's report.
        verbose: add the per-layer and per-suite tables.
        markup: use colour and box characters.
    """
    style = _Style(markup)
    parts: list[RenderableType] = []
    if not report.models:
        parts.append(Text("No model was tracked: use the dl_coverage fixture's track()."))
    for model in report.models:
        parts.append(_model_table(report, model, style))
        if model.baseline is not None and not model.baseline_found:
            parts.append(Text(f"Baseline {model.baseline!r} of {model.name!r} was not tracked."))
        if verbose:
            parts.extend(_verbose_tables(report, model, style))
    if any(model.suites for model in report.models):
        parts.append(_correlation_table(report, style))
    if report.comparison is not None:
        parts.append(_comparison_table(report, style))
    if report.verdicts:
        parts.append(_verdict_table(report, style))
    for missing in report.missing:
        parts.append(style.alarm(f"Missing coverage data: {missing}"))
    return parts


def _model_table(report: Report, model: ModelResult, style: _Style) -> Group:
    table = style.table()
    table.add_column("Criterion")
    table.add_column("Covered", justify="right")
    table.add_column("Coverage", justify="right")
    if model.baseline_found:
        table.add_column(f"vs {model.baseline}", justify="right", overflow="fold")
    for criterion in report.criteria:
        coverage = model.coverage.get(criterion)
        row: list[RenderableType] = [
            criterion.upper(),
            coverage_cell(coverage),
            coverage_percent(coverage),
        ]
        if model.baseline_found:
            row.append(style.delta(model.delta.get(criterion)))
        table.add_row(*row)
    title = f"Model {model.name}: {model.inputs} inputs in {len(model.suites)} suites"
    return style.titled(title, table)


def _verbose_tables(report: Report, model: ModelResult, style: _Style) -> list[Group]:
    tables = []
    layer_criteria = [c for c in report.criteria if any(c in v for v in model.layers.values())]
    if model.layers and layer_criteria:
        table = style.table()
        table.add_column("Layer", overflow="fold")
        for criterion in layer_criteria:
            table.add_column(criterion.upper(), justify="right")
        for layer, coverage in model.layers.items():
            table.add_row(layer, *(coverage_percent(coverage.get(c)) for c in layer_criteria))
        tables.append(style.titled(f"Model {model.name}, per layer", table))

    if model.suites:
        table = style.table()
        table.add_column("Suite", overflow="fold", ratio=1)
        table.add_column("Inputs", justify="right")
        table.add_column("Acc.", justify="right")
        for criterion in report.criteria:
            table.add_column(criterion.upper(), justify="right")
        for suite in model.suites:
            table.add_row(
                suite.name,
                str(suite.inputs),
                percent(suite.accuracy_exact),
                *(coverage_percent(suite.coverage.get(c)) for c in report.criteria),
            )
        tables.append(style.titled(f"Model {model.name}, per suite", table))
    return tables


def _correlation_table(report: Report, style: _Style) -> Group:
    table = style.table()
    table.add_column("Criterion")
    table.add_column("Pearson r", justify="right")
    table.add_column("p-value", justify="right")
    table.add_column("Spearman rho", justify="right")
    table.add_column("n", justify="right")
    table.add_column("Dropped", justify="right")
    for c in report.correlation:
        table.add_row(
            c.criterion.upper(),
            number(c.pearson_r),
            p_value_text(c.p_value),
            number(c.spearman_rho),
            str(c.n),
            str(c.dropped),
        )
    notes = [Text(note) for note in correlation_notes(report.correlation)]
    title = "Accuracy/coverage correlation over (model, suite) pairs"
    return Group(style.titled(title, table), *notes)


def _comparison_table(report: Report, style: _Style) -> Group:
    assert report.comparison is not None
    table = style.table()
    table.add_column("Model", overflow="fold")
    table.add_column("Criterion")
    table.add_column("Before", justify="right")
    table.add_column("Now", justify="right")
    table.add_column("Change", justify="right", overflow="fold")
    for change in report.comparison.changes:
        table.add_row(
            change.model,
            change.criterion.upper(),
            coverage_percent(change.before),
            coverage_percent(change.after),
            change.note or style.delta(change.change),
        )
    return style.titled(f"Change against {report.comparison.source}", table)


def _verdict_table(report: Report, style: _Style) -> Group:
    table = style.table()
    table.add_column("Model", overflow="fold")
    table.add_column("Criterion")
    table.add_column("Measured", justify="right")
    table.add_column("Required", justify="right")
    table.add_column("Result")
    for v in report.verdicts:
        if v.kind == "fail-under":
            measured, required = distinct_texts(v.measured, v.required, percent)
            required = f">= {required}"
        else:
            measured, required = distinct_texts(v.measured, v.required, points)
            measured = "n/a" if v.measured is None else f"fell {measured}"
            required = f"fall <= {required}"
        table.add_row(v.model, v.criterion.upper(), measured, required, style.verdict(v.passed))
    return style.titled("Thresholds", table)


def render(report: Report, *, verbose: bool = False, markup: bool = False, width: int = 80) -> str:
    """Returns the terminal report as text.

    Args:
        report: the session's report.
        verbose: add the per-layer and per-suite tables (`term-verbose`).
        markup: colour and box characters, for a terminal that shows them.
        width: the width to fit, in columns.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=markup,
        no_color=not markup,
        color_system="standard" if markup else None,
        highlight=False,
        emoji=False,
    )
    parts = renderables(report, verbose, markup)
    spaced: list[RenderableType] = []
    for part in parts:
        if spaced:
            spaced.append(Text(""))
        spaced.append(part)
    console.print(Group(*spaced))
    text = buffer.getvalue()
    if not markup:
        text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    return text
