"""The Markdown report: the terminal report's tables as GitHub-flavoured Markdown.

The report is appended to its file, so that `markdown:$GITHUB_STEP_SUMMARY` adds it to
a CI job summary next to what other steps wrote there.
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write
from . import Report, model_summary, tables


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: tables.Table) -> list[str]:
    """Returns a table's Markdown lines and a blank line; a failed verdict is bold, words
    in place of a number are in italics."""

    def cell(text: str, tone: str) -> str:
        if tone == "fail":
            return f"**{_escape(text)}**"
        if tone == "note":
            return f"*{_escape(text)}*"
        return _escape(text)

    align = [":--" if j < table.text_columns else "--:" for j in range(len(table.header))]
    lines = [
        "| " + " | ".join(_escape(h) for h in table.header) + " |",
        "|" + "|".join(align) + "|",
    ]
    for i, row in enumerate(table.rows):
        cells = [cell(text, table.tone(i, j)) for j, text in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _code(name: str) -> str:
    return f"`{name}`"


def render(report: Report) -> str:
    """Returns the report as Markdown: per model, per suite, correlation, comparison
    and thresholds."""
    out = ["## DL coverage", ""]
    if report.failed:
        out += [f"**Coverage checks failed:** {report.failure_summary()}.", ""]
    if not report.models:
        out += ["No model was tracked.", ""]

    for model in report.models:
        out += [f"### Model {_code(model.name)}", ""]
        out += [f"{model_summary(model)}.", ""]
        out += _table(tables.model_table(report, model, quote=_code))
        if model.baseline is not None and not model.baseline_found:
            out += [f"Baseline {_code(model.baseline)} was not tracked.", ""]

        suites = tables.suite_table(report, model)
        if suites is not None:
            out += _table(suites)

        layers = tables.layer_table(report, model)
        if layers is not None:
            out += ["<details><summary>Per layer</summary>", ""]
            out += _table(layers)
            out += ["</details>", ""]

    correlation = tables.correlation_table(report)
    if correlation is not None:
        out += ["### Accuracy/coverage correlation", ""]
        out += _table(correlation)

    if report.comparison is not None:
        out += [f"### Change against {_code(report.comparison.source)}", ""]
        out += _table(tables.comparison_table(report.comparison))

    if report.verdicts:
        out += ["### Thresholds", ""]
        out += _table(tables.threshold_table(report.verdicts))
    for missing in report.missing:
        out += [f"**Missing coverage data:** {missing}", ""]
    return "\n".join(out) + "\n"


def write(report: Report, path: Path) -> Path:
    """Appends the Markdown report to `path`, atomically: the file is read, extended
    and replaced as a whole.

    Returns:
        The path written.
    """
    path = Path(path)
    before = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    if before and not before.endswith("\n\n"):
        before += "\n" if before.endswith("\n") else "\n\n"
    atomic_write(path, before + render(report))
    return path
