"""The Markdown report: the terminal report's tables as GitHub-flavoured Markdown.

The report is appended to its file, so that `markdown:$GITHUB_STEP_SUMMARY` adds it to
a CI job summary next to what other steps wrote there.
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write
from . import (
    Report,
    correlation_notes,
    coverage_cell,
    coverage_percent,
    number,
    p_value_text,
    percent,
    points,
)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = [":--" if i < right_from else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render(report: Report) -> str:
    """Returns the report as Markdown: per model, per suite, correlation, comparison
    and thresholds."""
    out = ["## DL coverage", ""]
    if report.failed:
        out += [f"**Coverage checks failed:** {report.failure_summary()}.", ""]
    if not report.models:
        out += ["No model was tracked.", ""]

    for model in report.models:
        out += [f"### Model `{model.name}`", ""]
        out += [f"{model.inputs} inputs in {len(model.suites)} suites.", ""]
        header = ["Criterion", "Covered", "Coverage"]
        if model.baseline_found:
            header.append(f"vs `{model.baseline}`")
        rows = []
        for c in report.criteria:
            row = [
                c.upper(),
                coverage_cell(model.coverage.get(c)),
                coverage_percent(model.coverage.get(c)),
            ]
            if model.baseline_found:
                row.append(points(model.delta.get(c), signed=True))
            rows.append(row)
        out += _table(header, rows)
        if model.baseline is not None and not model.baseline_found:
            out += [f"Baseline `{model.baseline}` was not tracked.", ""]

        if model.suites:
            header = ["Suite", "Inputs", "Accuracy", *(c.upper() for c in report.criteria)]
            rows = [
                [
                    s.name,
                    str(s.inputs),
                    percent(s.accuracy_exact),
                    *(coverage_percent(s.coverage.get(c)) for c in report.criteria),
                ]
                for s in model.suites
            ]
            out += _table(header, rows)

        layer_criteria = [c for c in report.criteria if any(c in v for v in model.layers.values())]
        if model.layers and layer_criteria:
            out += ["<details><summary>Per layer</summary>", ""]
            rows = [
                [layer, *(coverage_percent(cov.get(c)) for c in layer_criteria)]
                for layer, cov in model.layers.items()
            ]
            out += _table(["Layer", *(c.upper() for c in layer_criteria)], rows)
            out += ["</details>", ""]

    if any(model.suites for model in report.models):
        out += ["### Accuracy/coverage correlation", ""]
        rows = [
            [
                c.criterion.upper(),
                number(c.pearson_r),
                p_value_text(c.p_value),
                number(c.spearman_rho),
                str(c.n),
                str(c.dropped),
            ]
            for c in report.correlation
        ]
        out += _table(["Criterion", "Pearson r", "p-value", "Spearman rho", "n", "Dropped"], rows)
        notes = correlation_notes(report.correlation)
        out += [f"- {note}" for note in notes] + ([""] if notes else [])

    if report.comparison is not None:
        out += [f"### Change against `{report.comparison.source}`", ""]
        rows = [
            [
                ch.model,
                ch.criterion.upper(),
                coverage_percent(ch.before),
                coverage_percent(ch.after),
                ch.note or points(ch.change, signed=True),
            ]
            for ch in report.comparison.changes
        ]
        out += _table(["Model", "Criterion", "Before", "Now", "Change"], rows, right_from=2)

    if report.verdicts:
        out += ["### Thresholds", ""]
        rows = [
            [v.model, v.criterion.upper(), "pass" if v.passed else "**FAIL**", v.message()]
            for v in report.verdicts
        ]
        out += _table(["Model", "Criterion", "Result", "Detail"], rows, right_from=4)
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
