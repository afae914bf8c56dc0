"""The terminal report, drawn with rich.

Tables fit 80 columns (long suite and layer names wrap; suite names, which are test ids,
wrap after "/" and "::" first). On a terminal with colour the tables use box characters
and colour; otherwise (a file, a CI log) they are plain ASCII text.

Every text the report shows is a `rich.text.Text`, never a plain string: rich would
read a string as console markup and drop what looks like a tag, such as the
"[rotation-15]" of a parametrized test's id.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from . import (
    ModelResult,
    Report,
    distinct_texts,
    model_summary,
    percent,
    points,
    tables,
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


# How each tone of `tables.Table` looks on a terminal with colour.
TONES = {"gain": "green", "loss": "red", "pass": "green", "fail": "bold red", "note": "dim"}


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

    def cell(self, text: str, tone: str) -> Text:
        """Returns a cell, coloured by its tone."""
        styled = Text(text)
        if tone and self.markup:
            styled.stylize(TONES[tone])
        return styled

    def rich_table(
        self,
        table: tables.Table,
        columns: Mapping[int, Mapping[str, Any]] | None = None,
        names: int | None = None,
    ) -> Table:
        """Returns a shared table as a rich table; text columns are aligned left, the
        others right.

        Args:
            table: the table's cells.
            columns: per column index, options for `Table.add_column` that override
                these (a shorter "header", "overflow", "ratio").
            names: the index of a column of suite names, which wrap after "/" and "::".
        """
        columns = columns or {}
        rich = self.table()
        for j, title in enumerate(table.header):
            options = {
                "header": Text(title),
                "justify": "left" if j < table.text_columns else "right",
            }
            rich.add_column(**{**options, **columns.get(j, {})})
        for i, row in enumerate(table.rows):
            cells: list[RenderableType] = [
                self.cell(text, table.tone(i, j)) for j, text in enumerate(row)
            ]
            if names is not None:
                cells[names] = SuiteName(row[names])
            rich.add_row(*cells)
        return rich

    def alarm(self, text: str) -> Text:
        return Text(text, style="bold red" if self.markup else "")


class SuiteName:
    """A suite name, by default a test id, that where it must wrap breaks after "/" and
    "::", and inside one part only when that part alone is too long for the column.

    Args:
        text: the name, e.g. "tests/test_study.py::test_rotation[15]".
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts = re.split(r"(?<=/)|(?<=::)", text)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(max(cell_len(part) for part in self.parts), cell_len(self.text))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        lines = [""]
        for part in self.parts:
            if lines[-1] and cell_len(lines[-1] + part) > options.max_width:
                lines.append("")
            lines[-1] += part
        yield Text("\n".join(lines), overflow="fold")


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
    correlation = tables.correlation_table(report)
    if correlation is not None:
        title = "Accuracy/coverage correlation over (model, suite) pairs"
        parts.append(style.titled(title, style.rich_table(correlation)))
    if report.comparison is not None:
        parts.append(_comparison_table(report, style))
    if report.verdicts:
        parts.append(_verdict_table(report, style))
    for missing in report.missing:
        parts.append(style.alarm(f"Missing coverage data: {missing}"))
    return parts


def _model_table(report: Report, model: ModelResult, style: _Style) -> Group:
    # The column "vs BASELINE" (index 3, present with a tracked baseline) folds a long name.
    table = style.rich_table(tables.model_table(report, model), {3: {"overflow": "fold"}})
    title = f"Model {model.name}: {model_summary(model)}"
    return style.titled(title, table)


def _verbose_tables(report: Report, model: ModelResult, style: _Style) -> list[Group]:
    groups = []
    layers = tables.layer_table(report, model)
    if layers is not None:
        table = style.rich_table(layers, {0: {"overflow": "fold"}})
        groups.append(style.titled(f"Model {model.name}, per layer", table))

    suites = tables.suite_table(report, model)
    if suites is not None:
        # On 80 columns the suite names (test ids) need the room that "Accuracy" takes.
        table = style.rich_table(suites, {0: {"ratio": 1}, 2: {"header": Text("Acc.")}}, names=0)
        # Nine columns: one space between them instead of two leaves room for names such
        # as "point_noise" before they fold.
        table.collapse_padding = True
        groups.append(style.titled(f"Model {model.name}, per suite", table))
    return groups


def _comparison_table(report: Report, style: _Style) -> Group:
    assert report.comparison is not None
    shared = tables.comparison_table(report.comparison)
    table = style.rich_table(shared, {0: {"overflow": "fold"}, 4: {"overflow": "fold"}})
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
        table.add_row(
            Text(v.model),
            Text(v.criterion.upper()),
            Text(measured),
            Text(required),
            style.cell("pass", "pass") if v.passed else style.cell("FAIL", "fail"),
        )
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
