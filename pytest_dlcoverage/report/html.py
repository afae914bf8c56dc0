"""The HTML report: one self-contained page (`index.html` in the report folder) with the
report's tables and two plots drawn with matplotlib and embedded as base64 PNG:
coverage against accuracy per criterion (one point per model and suite), and each
model's per-criterion coverage delta against its baseline.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so that writing
the report never changes the user's matplotlib backend or global figure state.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..fileio import atomic_write
from . import Report, model_summary, points, tables

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th.text, td.text { text-align: left; }
th { background: #f3f3f3; }
td.pass { color: #1a7f37; } td.fail { color: #c62828; font-weight: bold; }
.banner { padding: 0.6em 1em; border-radius: 4px; }
.banner.fail { background: #fdecea; color: #c62828; }
.banner.pass { background: #e8f5e9; color: #1a7f37; }
img { max-width: 100%; }
.note { color: #666; }
td.note { text-align: center; font-style: italic; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


# The page marks verdicts and words in place of numbers; deltas carry their sign in the text.
_CLASSES = {"pass": "pass", "fail": "fail", "note": "note"}


def _table(table: tables.Table) -> str:
    """Returns a table as HTML: text columns get the class "text" (aligned left), a
    verdict its class "pass" or "fail", words in place of numbers the class "note", and
    a cell that stands for several columns its colspan."""

    def cell(tag: str, text: str, j: int, tone: str = "", span: int = 1) -> str:
        css = _CLASSES.get(tone, "")
        names = " ".join(n for n in (css, "text" if j < table.text_columns else "") if n)
        attributes = (f' class="{names}"' if names else "") + (
            f' colspan="{span}"' if span > 1 else ""
        )
        return f"<{tag}{attributes}>{_e(text)}</{tag}>"

    head = "".join(cell("th", h, j) for j, h in enumerate(table.header))
    body = []
    for i, row in enumerate(table.rows):
        cells = [
            cell("td", c, j, table.tone(i, j), table.span(i, j))
            for j, c in enumerate(row)
            if table.span(i, j) > 0
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{encoded}">'


def scatter_plot(report: Report) -> str | None:
    """Returns an `<img>` of coverage against accuracy, one panel per criterion and one
    point per (model, suite) with an accuracy, or `None` when there is no such pair."""
    from matplotlib.figure import Figure

    pairs = [(m, s) for m in report.models for s in m.suites if s.accuracy is not None]
    if not pairs:
        return None
    columns = min(3, len(report.criteria))
    rows = math.ceil(len(report.criteria) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    markers = "osD^vP*X"
    for index, criterion in enumerate(report.criteria):
        ax = axes[index // columns][index % columns]
        for k, model in enumerate(report.models):
            points_ = [
                (100 * s.accuracy, 100 * s.coverage[criterion].fraction)
                for s in model.suites
                if s.accuracy is not None
                and criterion in s.coverage
                and s.coverage[criterion].fraction is not None
            ]
            if points_:
                xs, ys = zip(*points_, strict=True)
                ax.scatter(xs, ys, label=model.name, marker=markers[k % len(markers)], alpha=0.8)
        correlation = next(c for c in report.correlation if c.criterion == criterion)
        subtitle = (
            f"r = {correlation.pearson_r:.2f}, n = {correlation.n}"
            if correlation.pearson_r is not None
            else correlation.short_reason or f"n = {correlation.n}"
        )
        ax.set_title(f"{criterion.upper()} ({subtitle})", fontsize=10)
        ax.set_xlabel("accuracy (%)")
        ax.set_ylabel("coverage (%)")
        ax.grid(alpha=0.3)
    for index in range(len(report.criteria), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def delta_plot(report: Report) -> str | None:
    """Returns an `<img>` of each model's per-criterion coverage delta against its
    baseline, in percentage points, or `None` when no model has a tracked baseline."""
    figure = delta_figure(report)
    return None if figure is None else _png(figure)


def delta_figure(report: Report) -> Figure | None:
    """Returns the figure of `delta_plot`: per criterion one bar per model with a tracked
    baseline, labelled like the tables; an undefined delta has no bar and reads "n/a"."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    models = [m for m in report.models if m.baseline_found]
    if not models:
        return None
    figure = Figure(figsize=(max(5.0, 1.1 * len(report.criteria) * len(models) + 2), 3.6))
    ax = figure.subplots()
    width = 0.8 / len(models)
    legend = []
    for k, model in enumerate(models):
        color = f"C{k % 10}"
        defined, undefined = [], []
        for i, criterion in enumerate(report.criteria):
            position = i - 0.4 + width * (k + 0.5)
            delta = model.delta.get(criterion)
            if delta is None:
                undefined.append(position)
            else:
                defined.append((position, delta))
        legend.append(Patch(color=color, label=f"{model.name} vs {model.baseline}"))
        if defined:
            positions, deltas = zip(*defined, strict=True)
            bars = ax.bar(positions, [float(d) * 100 for d in deltas], width, color=color)
            # The labels are those of the tables: a delta that is not 0 never reads as 0.
            labels = [points(d, signed=True) for d in deltas]
            ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
        # An undefined delta (a coverage without items on either side) has no bar, only
        # a label on the zero line, so that it cannot be read as no change.
        for position in undefined:
            ax.annotate(
                "n/a",
                (position, 0),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color=color,
            )
    ax.axhline(0, color="#444", linewidth=0.8)
    # Fixed, not fitted to the bars: an "n/a" outside the limits would not be drawn.
    ax.set_xlim(-0.5, len(report.criteria) - 0.5)
    ax.set_xticks(range(len(report.criteria)))
    ax.set_xticklabels([c.upper() for c in report.criteria])
    ax.set_ylabel("coverage delta (percentage points)")
    ax.grid(axis="y", alpha=0.3)
    # Drawn from patches, so that a model whose deltas are all undefined is listed too.
    ax.legend(handles=legend, fontsize=8)
    figure.tight_layout()
    return figure


def render(report: Report) -> str:
    """Returns the report as one self-contained HTML page."""
    parts = ["<h1>DL coverage report</h1>"]
    if report.failed:
        parts.append(
            f'<p class="banner fail">Coverage checks failed: {report.failure_summary()}.</p>'
        )
    elif report.verdicts:
        parts.append('<p class="banner pass">All coverage thresholds passed.</p>')
    for missing in report.missing:
        parts.append(f'<p class="banner fail">Missing coverage data: {_e(missing)}</p>')
    if not report.models:
        parts.append("<p>No model was tracked.</p>")

    parts.append("<h2>Models</h2>")
    for model in report.models:
        parts.append(
            f"<h3>{_e(model.name)}</h3><p class='note'>{model_summary(model)}"
            + (f"; baseline {_e(model.baseline)}" if model.baseline else "")
            + ("" if model.baseline_found or not model.baseline else " (not tracked)")
            + "</p>"
        )
        parts.append(_table(tables.model_table(report, model)))

        suites = tables.suite_table(report, model)
        if suites is not None:
            parts.append(_table(suites))

        layers = tables.layer_table(report, model)
        if layers is not None:
            parts.append("<details><summary>Per layer</summary>")
            parts.append(_table(layers))
            parts.append("</details>")

    correlation = tables.correlation_table(report)
    if correlation is not None:
        parts.append("<h2>Accuracy and coverage</h2>")
        parts.append(_table(correlation))
        scatter = scatter_plot(report)
        if scatter:
            parts.append(scatter)

    deltas = delta_plot(report)
    if deltas:
        parts.append("<h2>Coverage against the baseline</h2>")
        parts.append(deltas)

    if report.comparison is not None:
        parts.append(f"<h2>Change against {_e(report.comparison.source)}</h2>")
        parts.append(_table(tables.comparison_table(report.comparison)))

    if report.verdicts:
        parts.append("<h2>Thresholds</h2>")
        parts.append(_table(tables.threshold_table(report.verdicts)))

    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>DL coverage report</title>"
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def write(report: Report, folder: Path) -> Path:
    """Writes the page to `folder/index.html` atomically.

    Returns:
        The path of the page.
    """
    path = Path(folder) / "index.html"
    atomic_write(path, render(report))
    return path
