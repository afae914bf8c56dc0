"""Exact coverage numbers.

Coverage is kept as two integers, covered and total; fractions and percentages are
derived from them for display and for thresholds, so rounding never changes a
verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, order=False)
class Coverage:
    """Covered and total items of one criterion (neurons, sections, corners or
    combinations, depending on the criterion).

    `total` may be zero (for example NBC on a layer with no neurons); the fraction is
    then undefined and `fraction` is `None`.
    """

    covered: int
    total: int

    def __post_init__(self) -> None:
        if self.covered < 0 or self.total < 0 or self.covered > self.total:
            raise ValueError(
                f"coverage must satisfy 0 <= covered <= total; "
                f"received covered={self.covered}, total={self.total}"
            )

    @property
    def exact(self) -> Fraction | None:
        """Returns covered / total as an exact fraction, or `None` when total is 0."""
        return Fraction(self.covered, self.total) if self.total else None

    @property
    def fraction(self) -> float | None:
        """Returns covered / total as a float in [0, 1], or `None` when total is 0."""
        return self.covered / self.total if self.total else None

    def percent_text(self, digits: int = 2) -> str:
        """Returns the percentage for display.

        Rounding never shows 0 or 100 for a value that is not exactly 0 or 100: such
        values are shown as "<0.01" or ">99.99" (for two digits).
        """
        if not self.total:
            return "n/a"
        if self.covered == 0:
            return "0"
        if self.covered == self.total:
            return "100"
        percent = 100 * self.covered / self.total
        step = 10.0**-digits
        if percent < step:
            return f"<{step:.{digits}f}"
        if percent > 100 - step:
            return f">{100 - step:.{digits}f}"
        return f"{percent:.{digits}f}"

    def __add__(self, other: Coverage) -> Coverage:
        """Returns the sum of two disjoint coverages (for example two layers)."""
        return Coverage(self.covered + other.covered, self.total + other.total)

    def __str__(self) -> str:
        percent = f"{self.percent_text()}%" if self.total else "n/a"
        return f"{self.covered}/{self.total} ({percent})"
