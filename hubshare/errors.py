"""Errors a data engineer can act on: each message names the input and what is wrong."""


class HubshareError(Exception):
    """Base class: the CLI prints the message as one line and exits non-zero."""


class ExtractError(HubshareError):
    """The Hub could not be listed (unreachable, rejected the request, retries exhausted)."""


class TransientExtractError(ExtractError):
    """A failure worth retrying later: the crawl resumes from its last stored page.
    `pages_fetched` counts the pages this attempt stored before it failed."""

    pages_fetched: int = 0


class CrawlBusyError(ExtractError):
    """Another process is crawling the same date into the same data dir."""


class MalformedPageError(ExtractError):
    """The Hub answered a page that is not a JSON list of model objects."""


class PageTooLargeError(ExtractError):
    """A Hub response decompresses to more than HUBSHARE_MAX_PAGE_BYTES; `head` holds its first
    bytes (as many as the cap), kept aside for inspection."""

    def __init__(self, message: str, head: bytes) -> None:
        super().__init__(message)
        self.head = head


class StorageError(HubshareError):
    """The data dir's store (a folder or object storage) refused or failed an operation."""


class LeaseLostError(StorageError):
    """This process's lease on a folder of object storage was taken over, or went unrenewed so
    long that it may expire: its writes under that folder are refused. `holder` names who holds
    the lease now, as far as the store says."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class SnapshotError(HubshareError):
    """A stored raw snapshot is missing, altered, or cannot be read."""


class ArchiveImportError(HubshareError):
    """An archive file to import fits no known layout or holds a row that cannot be read."""


class MappingError(HubshareError):
    """The org-to-country mapping file cannot be read or is invalid."""


class GateFailedError(HubshareError):
    """The quality gate rejected the run: nothing was published."""


class WarehouseError(HubshareError):
    """The warehouse cannot be reached or holds nothing for the request."""


class UnstorableDataError(HubshareError):
    """A value the warehouse cannot store (too long for its column, a NUL character)."""


class ReproductionError(HubshareError):
    """A stored run does not reproduce from its recorded inputs."""


class UsageError(HubshareError):
    """The command line names something that does not exist or is ambiguous (exit 2)."""
