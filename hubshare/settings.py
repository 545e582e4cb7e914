"""Runtime settings, read from the environment and an optional `.env` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hubshare.errors import UsageError
from hubshare.resources import reference_file
from hubshare.storage import DataStore, is_object_store

#: The reference mapping: the checkout's `data/org_country.csv`, else the one the package ships.
DEFAULT_MAPPING = reference_file("data/org_country.csv")


class Settings(BaseSettings):
    """Every knob of a run. Names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    hf_endpoint: str = Field(default="https://huggingface.co", alias="HF_ENDPOINT")
    hf_token: SecretStr | None = Field(default=None, alias="HF_TOKEN")
    # A folder, or object storage (`s3://bucket/prefix`, `gs://…`, `az://…`): hubshare.storage.
    data_dir: str = Field(default="var", alias="HUBSHARE_DATA_DIR")
    warehouse_url: str | None = Field(default=None, alias="HUBSHARE_WAREHOUSE_URL")
    mapping_path: Path = Field(default=DEFAULT_MAPPING, alias="HUBSHARE_MAPPING")

    # Crawl.
    page_size: int = Field(default=1000, ge=1, le=1000, alias="HUBSHARE_PAGE_SIZE")
    # Bounds on what a Hub (or something posing as one) can make a crawl hold and store: a page
    # of 1,000 models with our expand fields is about 0.5 MB (the 2024-09-20 sample), so 64 MiB
    # refuses only a page no Hub sends (a gzip bomb); 10 million models is over four times the
    # Hub of 2026, so a crawl past it is a listing that never ends.
    max_page_bytes: int = Field(default=64 * 2**20, ge=1024, alias="HUBSHARE_MAX_PAGE_BYTES")
    max_crawl_models: int = Field(default=10_000_000, ge=1, alias="HUBSHARE_MAX_CRAWL_MODELS")
    # Defaults: an unreachable Hub fails the run in about half a minute of backoff (1+2+4+8+16 s;
    # docs/operations.md), long enough for a blip, short enough to alert; 429s wait what the
    # Hub's RateLimit/Retry-After headers say.
    http_max_retries: int = Field(default=5, ge=0, alias="HUBSHARE_HTTP_MAX_RETRIES")
    http_base_wait: float = Field(default=1.0, ge=0, alias="HUBSHARE_HTTP_BASE_WAIT")
    http_max_wait: float = Field(default=30.0, ge=0, alias="HUBSHARE_HTTP_MAX_WAIT")
    http_connect_timeout: float = Field(default=10.0, gt=0, alias="HUBSHARE_HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(default=60.0, gt=0, alias="HUBSHARE_HTTP_READ_TIMEOUT")

    # Prefect task retries of the whole crawl after the HTTP retries gave up (it resumes); only
    # for an attempt that stored pages: a Hub dead from the start fails the run at once.
    extract_task_retries: int = Field(default=2, ge=0, alias="HUBSHARE_EXTRACT_TASK_RETRIES")
    extract_task_retry_delay: float = Field(
        default=60.0, ge=0, alias="HUBSHARE_EXTRACT_TASK_RETRY_DELAY"
    )

    # Account types (issue 18): overview requests per run (an organisation costs 1, a user 2),
    # and the days a typed namespace is not asked again; docs/decisions.md sizes both.
    namespace_lookups: int = Field(default=2000, ge=0, alias="HUBSHARE_NAMESPACE_LOOKUPS")
    account_recheck_days: int = Field(default=30, ge=0, alias="HUBSHARE_ACCOUNT_RECHECK_DAYS")

    # On object storage, how long a crawl's or a run's lease outlives a holder that stopped
    # renewing it (killed): the next run of that date waits at most this long.
    lease_seconds: float = Field(default=120.0, gt=0, alias="HUBSHARE_LEASE_SECONDS")

    # Backfill: dates run at once on PostgreSQL (SQLite always runs one at a time).
    backfill_concurrency: int = Field(default=2, ge=1, alias="HUBSHARE_BACKFILL_CONCURRENCY")

    # Where failed, crashed and rejected runs are announced (a JSON POST); unset: nowhere.
    alert_webhook_url: SecretStr | None = Field(default=None, alias="HUBSHARE_ALERT_WEBHOOK_URL")

    # Quality gate.
    max_row_drop: float = Field(default=0.05, ge=0, le=1, alias="HUBSHARE_MAX_ROW_DROP")
    max_unknown_share: float = Field(default=0.5, ge=0, le=1, alias="HUBSHARE_MAX_UNKNOWN_SHARE")
    # Review queue: organisations without a country (typed org or not typed yet, no reviewed
    # row) above this share of downloads is a warning (log, artifact, webhook); still published.
    max_unreviewed_share: float = Field(
        default=0.02, ge=0, le=1, alias="HUBSHARE_MAX_UNREVIEWED_SHARE"
    )

    @field_validator("hf_endpoint")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("hf_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @property
    def resolved_warehouse_url(self) -> str:
        """The SQLAlchemy URL; plain `postgresql://` selects the psycopg 3 driver we ship."""
        if self.warehouse_url is None and is_object_store(self.data_dir):
            raise UsageError(
                f"HUBSHARE_DATA_DIR is {self.store.location}: set HUBSHARE_WAREHOUSE_URL too "
                "(the default SQLite file lives in a local data dir, not on object storage)"
            )
        url = self.warehouse_url or f"sqlite:///{(Path(self.data_dir) / 'warehouse.db').resolve()}"
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def store(self) -> DataStore:
        """Every file under the data dir (raw snapshots, run files, archived mappings)."""
        return DataStore.open(self.data_dir)


def get_settings() -> Settings:
    """The settings, or a UsageError (exit 2) naming each invalid variable and the form it
    expects; the value itself is left out (it may be a secret)."""
    try:
        return Settings()
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
            for problem in err.errors(include_url=False, include_input=False)
        )
        raise UsageError(f"invalid setting {problems}") from None
