"""What the library tells the person watching: the interface the loop, the evaluation and the
tools report progress to. `QuietUI` (this one) says nothing: library use and tests; the CLI
passes `report.display.RichUI`, which draws progress bars and tables. The library hands it data,
never formatted output, so no part of the algorithm imports presentation code.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


class QuietUI:
    def info(self, message: str) -> None:
        """A line of news (may carry rich markup)."""

    def stage(self, name: str) -> None:
        """A stage starts."""

    def skipped(self, name: str) -> None:
        """A stage's artifact exists already: it is kept, not made again."""

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        """Yields advance(n=1, total=None): n more units done (total: set or change the total)."""
        yield lambda n=1, total=None: None

    def round_done(self, t: int, metrics: dict, evaluation: dict | None) -> None:
        """Round t finished in this call: its roundN/metrics.json, and its eval.json if evaluated."""
