"""A terminal progress bar for CLI crawls, fed by the crawl's page log records (so the crawl
itself knows nothing of terminals), and the time and memory each stage of a run took."""

from __future__ import annotations

import logging
import resource
import sys
import time
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


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB of 1024³ bytes as the benchmarks
    report it (Linux gives KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024**3 if sys.platform == "darwin" else 1024**2), 3)


def describe_stage_seconds(
    seconds: dict[str, float], peak_gb: dict[str, float] | None = None
) -> str:
    """`crawl 1.20 s, attribute 0.31 s, … (total 4.10 s; peak RSS 0.48 GB, in crawl)`: a run's
    stage times in one line, and the stage in which the process reached its peak memory."""
    parts = [f"{name} {value:.2f} s" for name, value in seconds.items()]
    line = ", ".join(parts) + f" (total {sum(seconds.values()):.2f} s"
    if peak_gb:
        peak = max(peak_gb.values())
        where = next(name for name, value in peak_gb.items() if value == peak)
        line += f"; peak RSS {peak:.2f} GB, in {where}"
    return line + ")"


class StageTimes:
    """Wall time of each stage of a run, for its log, `hubshare run` and the benchmarks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        #: The process's peak RSS (GB) at the end of each stage: where the peak was reached.
        self.peak_gb: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            self.peak_gb[name] = peak_rss_gb()

    def describe(self) -> str:
        return describe_stage_seconds(self.seconds, self.peak_gb)
