"""Progress bars for long work (profiling, training), shown only on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(
    description: str, total: int | None = None, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Shows a transient progress bar while the block runs.

    The bar is drawn only when `enabled` and standard error is a terminal; it
    disappears when the block ends.

    Args:
        description: what is being done, shown left of the bar.
        total: units of work expected, or `None` when unknown.
        enabled: `False` hides the bar unconditionally.

    Returns:
        A function to call with the units just completed.
    """
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)
