"""Report: one self-contained HTML file (no script, font or image from the network) with each
bucket's share over time in both views and its uncertainty band, the dates where a namespace's
country changed, the latest table, coverage and the provenance of every published run. The shares
come from the BI views only, so a reader role can make it; the country changes come from the runs'
archived mappings (`<data dir>/mappings/`), when the data dir is at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import cast

import polars as pl
from sqlalchemy import Engine

from hubshare.errors import MappingError, UsageError, WarehouseError
from hubshare.storage import DataStore
from hubshare.warehouse import published_run_history, report_shares
from schemas.mapping import MAPPING_SCHEMA
from tasks.mapping import mapping_key, read_rows, rows_valid_on
from tasks.render_shares import latest_table_html_rows

TOP_BUCKETS = 6
#: Colour-blind-safe palette (Okabe-Ito), one colour per bucket in the order of the latest shares.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999")
WIDTH, HEIGHT, PAD = 760, 300, 48


#: What the report shows of each published run.
RUN_COLUMNS = (
    "snapshot_date",
    "version",
    "run_id",
    "row_count",
    "total_downloads",
    "raw_sha256",
    "mapping_sha256",
    "shares_sha256",
    "code_version",
    "finished_at",
)


@dataclass(frozen=True)
class CountryMove:
    """A namespace whose country on `day` differs from the one it had on the previous published
    date, each date read in its own run's mapping."""

    day: date  # the first published date with the new country
    org: str
    country_from: str
    country_to: str

    def __str__(self) -> str:
        return f"{self.org} {self.country_from} → {self.country_to}"


@dataclass(frozen=True)
class ReportData:
    shares: pl.DataFrame  # snapshot_date, attribution, country, downloads, share, low, high
    runs: pl.DataFrame  # the published runs: run_history columns
    moves: tuple[CountryMove, ...] | None = None  # None: not computed (no data dir at hand)
    unarchived: tuple[date, ...] = ()  # dates whose mapping could not be read: no move computed


def country_moves(
    runs: pl.DataFrame, store: DataStore
) -> tuple[tuple[CountryMove, ...], tuple[date, ...]]:
    """For each pair of consecutive published dates, the namespaces whose row valid on the later
    date (in that run's recorded mapping) has another country than their row valid on the earlier
    date (in its run's mapping): a dated change and an edit of the file alike. A namespace that
    gains or loses its row is not a move. Also the dates whose archived mapping is missing or
    unreadable (no move is computed next to them)."""
    frames: dict[str, pl.DataFrame | None] = {}

    def rows_of(sha256: str) -> pl.DataFrame | None:
        if sha256 not in frames:
            with store.local_file(mapping_key(sha256)) as path:
                try:
                    # read_rows, not load_mapping: an archived file stays readable after the
                    # rules it was written under have tightened.
                    rows = None if path is None else read_rows(path)
                except MappingError:
                    rows = None
            frames[sha256] = (
                None
                if rows is None
                else pl.DataFrame(rows, schema=MAPPING_SCHEMA).with_columns(
                    pl.col("org").str.to_lowercase().alias("org_lower")
                )
            )
        return frames[sha256]

    dated = runs.select("snapshot_date", "mapping_sha256").sort("snapshot_date").rows()
    unarchived = tuple(day for day, sha in dated if rows_of(sha) is None)
    moves: list[CountryMove] = []
    for (before_day, before_sha), (day, sha) in zip(dated, dated[1:], strict=False):
        before_rows, rows = rows_of(before_sha), rows_of(sha)
        if before_rows is None or rows is None:
            continue
        changed = (
            rows_valid_on(rows, day)
            .select("org_lower", "org", "country")
            .join(
                rows_valid_on(before_rows, before_day).select(
                    "org_lower", pl.col("country").alias("country_before")
                ),
                on="org_lower",
            )
            .filter(pl.col("country") != pl.col("country_before"))
            .sort("org_lower", "org")
        )
        moves += [
            CountryMove(day, org, country_from, country_to)
            for org, country_to, country_from in changed.select(
                "org", "country", "country_before"
            ).rows()
        ]
    return tuple(moves), unarchived


def read_report_data(
    engine: Engine, start: date | None, end: date | None, store: DataStore | None = None
) -> ReportData:
    """The published shares of the span and their runs; with the data dir's `store`, the
    country changes between consecutive dates too."""
    frame = report_shares(engine, start, end)
    if frame.is_empty():
        raise WarehouseError(
            "no published shares in the requested span: nothing to report (see `hubshare runs`)"
        )
    run_frame = published_run_history(engine, RUN_COLUMNS).filter(
        pl.col("snapshot_date").is_in(frame["snapshot_date"].unique().implode())
    )
    if store is None:
        return ReportData(frame, run_frame)
    return ReportData(frame, run_frame, *country_moves(run_frame, store))


def _short(name: str, value: object) -> str:
    """Checksums and run ids by their first 12 characters, like `hubshare runs`."""
    shown = str(value)
    return shown[:12] if name.endswith(("sha256", "run_id")) else shown


def _move_markers(moves: tuple[CountryMove, ...], x: Callable[[date], float]) -> list[str]:
    """A dashed vertical line on each date where namespaces changed country, labelled with the
    first of them and, as its tooltip (<title>), all of them."""
    by_day: dict[date, list[CountryMove]] = {}
    for move in moves:
        by_day.setdefault(move.day, []).append(move)
    parts = []
    for index, (day, found) in enumerate(sorted(by_day.items())):
        named = "; ".join(map(str, found))
        label = str(found[0]) + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
        parts.append(
            f'<g class="mapping-change" data-date="{day}"><title>{day}: {escape(named)}</title>'
            f'<line x1="{x(day):.1f}" x2="{x(day):.1f}" y1="{PAD:.1f}" y2="{HEIGHT - PAD:.1f}" '
            'class="marker"/>'
            f'<text x="{x(day) + 3:.1f}" y="{PAD + 10 + 12 * (index % 4):.1f}" '
            f'class="marker-label">{escape(label)}</text></g>'
        )
    return parts


def _chart(
    view: pl.DataFrame, buckets: list[str], title: str, moves: tuple[CountryMove, ...] = ()
) -> str:
    """An SVG line chart of each bucket's share over time, with its [low, high] band and a
    marker on each date where a namespace's country changed."""
    dates = sorted(view["snapshot_date"].unique().to_list())
    highs = view.filter(pl.col("country").is_in(buckets)).select(
        pl.max_horizontal("share", pl.col("high").fill_null(0.0)).max()
    )
    top = max(0.05, float(highs.item() or 0.0))
    span = max((dates[-1] - dates[0]).days, 1)

    def x(day: date) -> float:
        return PAD + (WIDTH - 2 * PAD) * ((day - dates[0]).days / span if len(dates) > 1 else 0.5)

    def y(value: float) -> float:
        return HEIGHT - PAD + (2 * PAD - HEIGHT) * (value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="20" class="title">{escape(title)}</text>',
    ]
    for tick in range(5):
        value = top * tick / 4
        parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'class="grid"/>'
            f'<text x="4" y="{y(value) + 4:.1f}" class="axis">{value:.0%}</text>'
        )
    bottom = HEIGHT - 10
    parts.append(
        f'<text x="{PAD}" y="{bottom}" class="axis">{dates[0]}</text>'
        f'<text x="{WIDTH - PAD}" y="{bottom}" class="axis" text-anchor="end">{dates[-1]}</text>'
    )
    parts += _move_markers(moves, x)
    for index, bucket in enumerate(buckets):
        colour = PALETTE[index % len(PALETTE)]
        series = view.filter(pl.col("country") == bucket).sort("snapshot_date")
        rows = series.select("snapshot_date", "share", "low", "high").rows()
        if not rows:  # a bucket of the other view only (e.g. INTL has no origin downloads)
            continue
        band = [(d, lo, hi) for d, _, lo, hi in rows if lo is not None and hi is not None]
        if band:
            upper = " ".join(f"{x(d):.1f},{y(hi):.1f}" for d, _, hi in band)
            lower = " ".join(f"{x(d):.1f},{y(lo):.1f}" for d, lo, _ in reversed(band))
            parts.append(
                f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" '
                f'data-bucket="{escape(bucket)}" class="band"/>'
            )
        line = " ".join(f"{x(d):.1f},{y(s):.1f}" for d, s, _, _ in rows)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2" '
            f'data-bucket="{escape(bucket)}" class="line"/>'
        )
        for d, s, _, _ in rows:
            parts.append(f'<circle cx="{x(d):.1f}" cy="{y(s):.1f}" r="2.5" fill="{colour}"/>')
        legend_x = PAD + 10 + index * 110
        parts.append(
            f'<rect x="{legend_x}" y="30" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="39" class="legend">{escape(bucket)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _moves_html(data: ReportData) -> str:
    """The country changes the charts mark, as a list (and the dates that could not be read)."""
    if data.moves is None:
        return ""
    items = "".join(
        f"<li>{move.day}: <code>{escape(move.org)}</code> {move.country_from} → "
        f"{move.country_to}</li>"
        for move in data.moves
    )
    listed = (
        f'<ul id="mapping-changes">{items}</ul>'
        if items
        else '<p id="mapping-changes" class="note">No namespace changed country between the '
        "published dates shown.</p>"
    )
    missing = (
        f'<p class="note">Not compared: the archived mapping of '
        f"{', '.join(map(str, data.unarchived))} is missing or unreadable.</p>"
        if data.unarchived
        else ""
    )
    return (
        "<h3>Country changes in the mapping</h3>"
        '<p class="note">Each date where a namespace\'s row has another country than on the '
        "previous published date (a dated row of the mapping, or an edit between two runs).</p>"
        f"{listed}{missing}"
    )


def render_report(data: ReportData, generated_at: datetime | None = None) -> str:
    shares = data.shares
    latest_day = cast(date, shares["snapshot_date"].max())
    latest = shares.filter(pl.col("snapshot_date") == latest_day)
    order = (
        latest.filter(pl.col("attribution") == "uploader")
        .sort(["share", "country"], descending=[True, False])["country"]
        .to_list()
    )
    buckets = [b for b in order if b != "UNKNOWN"][:TOP_BUCKETS]
    moves = data.moves or ()
    charts = "".join(
        f"<figure>{_chart(shares.filter(pl.col('attribution') == view), buckets, label, moves)}"
        "<figcaption>Lines: the published share; bands: its range over the contested mapping "
        "rows, the high end counting every UNKNOWN download as possibly the bucket's; dashed "
        "lines: dates where a namespace's country changed in the mapping (hover for which)."
        "</figcaption></figure>"
        for view, label in (
            ("uploader", "Uploader view: who uploaded the model"),
            ("origin", "Origin view: who made the weights"),
        )
    )
    table_rows = latest_table_html_rows(latest, order)
    unknown = {
        view: float(
            latest.filter((pl.col("attribution") == view) & (pl.col("country") == "UNKNOWN"))[
                "share"
            ].sum()
        )
        for view in ("uploader", "origin")
    }
    runs = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(_short(name, value))}</td>"
            for name, value in row.items()
            if name != "finished_at"
        )
        + "</tr>"
        for row in data.runs.iter_rows(named=True)
    )
    moves_html = _moves_html(data)
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    first_day = cast(date, shares["snapshot_date"].min())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{REPORT_MARKER}
<title>hubshare: download share by developer country, {first_day} to {latest_day}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd;
text-align: right; }} td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1em 0; }} figcaption, .note {{ color: #555; font-size: 0.9em; }}
.grid {{ stroke: #ddd; }} .axis, .legend {{ font-size: 11px; fill: #555; }}
.title {{ font-size: 13px; font-weight: 600; }}
.marker {{ stroke: #444; stroke-dasharray: 4 3; }} .marker-label {{ font-size: 10px; fill: #444; }}
</style></head><body>
<h1>Which countries' developers do open-model downloads go to?</h1>
<p class="note">Share of Hugging Face Hub downloads (the Hub's 30-day counter) by the developer's
country, from {len(shares["snapshot_date"].unique())} published daily snapshots, {first_day} to
{latest_day}. Generated {generated} by <code>hubshare report</code>.</p>
<h2>Shares over time</h2>
{charts}
{moves_html}
<h2>Latest: {latest_day}</h2>
<table id="latest"><thead><tr><th>country</th><th>uploader view</th><th>range</th>
<th>origin view</th><th>range</th></tr></thead><tbody>
{table_rows}
</tbody></table>
<h2>Coverage</h2>
<p id="coverage">On {latest_day}, the mapping classifies {1 - unknown["uploader"]:.2%} of downloads
in the uploader view and {1 - unknown["origin"]:.2%} in the origin view; the rest is
<code>UNKNOWN</code> (an uploader not in the reference mapping, or an organisation whose country
no source states).</p>
<h2>Provenance</h2>
<p class="note">Each published run, with the SHA-256 (first 12 hex digits) of its raw snapshot,
mapping and share table; <code>hubshare reproduce RUN_ID</code> recomputes any of them.</p>
<table id="runs"><thead><tr><th>date</th><th>version</th><th>run</th><th>models</th>
<th>downloads</th><th>raw</th><th>mapping</th><th>shares</th><th>code</th></tr></thead><tbody>
{runs}
</tbody></table>
</body></html>
"""


#: In every report's head: `--out` replaces a file only if it carries this (an earlier report).
REPORT_MARKER = '<meta name="generator" content="hubshare report">'


def refuse_unless_new_or_report(out: Path) -> None:
    """`out` must be a new file or an earlier report: anything else (the warehouse, a CSV, a
    folder) is someone's data, refused (exit 2) rather than replaced."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory: name a new file or an earlier report")
    try:
        with out.open("rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise UsageError(f"--out {out} cannot be read ({err.strerror}): name a new file") from None
    if REPORT_MARKER.encode() not in head:
        raise UsageError(
            f"--out {out} exists and is not a hubshare report: refusing to replace it "
            "(name a new file or an earlier report)"
        )


def write_report(
    engine: Engine,
    out: Path,
    start: date | None = None,
    end: date | None = None,
    store: DataStore | None = None,
) -> Path:
    """Render the report into `out` (atomically: a reader never sees half a file); the data
    dir's `store` gives the country changes (none marked without it)."""
    html = render_report(read_report_data(engine, start, end, store))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
