"""A terminal progress bar for CLI crawls, fed by the crawl's page log records (so the crawl
itself knows nothing of terminals)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

CRAWL_LOGGER = "tasks.extract"


class CrawlBar(logging.Handler):
    """Advances a bar for every `Page n: k models` record of the crawl."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.task = progress.add_task("crawling the Hub", total=None)
        self.models = 0

    def emit(self, record: logging.LogRecord) -> None:
        page = getattr(record, "crawl_page", None)
        if page is None:
            return
        self.models += int(getattr(record, "crawl_models", 0))
        done = bool(getattr(record, "crawl_done", False))
        self.progress.update(
            self.task,
            description=f"crawling the Hub: page {page:,}, {self.models:,} models"
            + (" (done)" if done else ""),
            completed=page,
        )


@contextmanager
def crawl_progress(console: Console) -> Iterator[CrawlBar | None]:
    """A live bar on `console` while the block runs, when it is a terminal; nothing otherwise
    (scripts and logs get the page lines instead)."""
    if not console.is_terminal:
        yield None
        return
    logger = logging.getLogger(CRAWL_LOGGER)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        bar = CrawlBar(progress)
        level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)  # the page records must reach the bar
        logger.addHandler(bar)
        try:
            yield bar
        finally:
            logger.removeHandler(bar)
            logger.setLevel(level)


def describe_stage_seconds(seconds: dict[str, float]) -> str:
    """`crawl 1.20 s, attribute 0.31 s, … (total 4.10 s)`: a run's stage times in one line."""
    parts = [f"{name} {value:.2f} s" for name, value in seconds.items()]
    return ", ".join(parts) + f" (total {sum(seconds.values()):.2f} s)"
