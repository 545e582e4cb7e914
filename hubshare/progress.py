"""A terminal progress bar for CLI crawls, fed by the crawl's page log records (so the crawl
itself knows nothing of terminals), a line per backfill date and per Hub backoff wait, and the
time and memory each stage of a run took."""

from __future__ import annotations

import logging
import re
import resource
import sys
import threading
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


# ----------------------------------------------------------------------------------------------
# Backfill dates and Hub waits, as lines on the terminal

#: The log record attributes of the backfill flow that the CLI prints (flows/backfill.py).
BACKFILL_URL = "backfill_flow_run_url"
BACKFILL_DATE = "backfill_date"


class BackfillLines(logging.Handler):
    """One line per date of a backfill as it ends, and the flow run's URL, from the flow's own
    log records (the flow knows nothing of terminals)."""

    def __init__(self, console: Console, show_url: bool) -> None:
        super().__init__(level=logging.INFO)
        self.console = console
        self.show_url = show_url

    def emit(self, record: logging.LogRecord) -> None:
        url = getattr(record, BACKFILL_URL, None)
        if url is not None and self.show_url:
            self.console.print(f"Backfill flow run: {url}", highlight=False, markup=False)
        elif getattr(record, BACKFILL_DATE, None) is not None:
            self.console.print(record.getMessage(), highlight=False, markup=False)


@contextmanager
def backfill_lines(console: Console, show_url: bool) -> Iterator[BackfillLines]:
    """Print the backfill flow's date lines (and its URL, when `show_url`) while the block
    runs."""
    logger = logging.getLogger("prefect.flow_runs")
    handler = BackfillLines(console, show_url)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


_HTTP_ERROR = re.compile(r"^HTTP Error (\d+) thrown while requesting")
_RAISED = re.compile(r"^'(.*)' thrown while requesting", re.DOTALL)
_WAIT = re.compile(r"(?:Retrying in|Waiting) ([\d.]+)s.*\[Retry (\d+)/(\d+)\]")
_CREDENTIALS = re.compile(r"//[^/@\s]*@")


class HubWaits(logging.Handler):
    """One line per backoff wait of huggingface_hub's retries (429, 5xx, timeouts, refused
    connections): what the Hub answered and how long the crawl waits, so that an unreachable
    Hub is not a silent minute. Its records name the URL; the line does not (it may carry
    credentials)."""

    def __init__(self, console: Console) -> None:
        super().__init__(level=logging.WARNING)
        self.console = console
        self._cause = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        status = _HTTP_ERROR.match(message)
        raised = _RAISED.match(message)
        if status is not None:
            self._cause.text = f"HTTP {status.group(1)}"
            return
        if raised is not None:
            first = (raised.group(1).splitlines() or ["no response"])[0]
            self._cause.text = _CREDENTIALS.sub("//", first)[:120]
            return
        wait = _WAIT.search(message)
        if wait is None:
            return
        cause = getattr(self._cause, "text", "no answer")
        seconds, attempt, attempts = float(wait.group(1)), wait.group(2), wait.group(3)
        self.console.print(
            f"Hub: {cause}; waiting {seconds:g} s before retry {attempt}/{attempts}",
            highlight=False,
            markup=False,
        )


def print_hub_waits(console: Console) -> HubWaits:
    """Print huggingface_hub's backoff waits on `console` for the rest of the process."""
    handler = HubWaits(console)
    logging.getLogger("huggingface_hub").addHandler(handler)
    return handler
