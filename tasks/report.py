"""Report: one self-contained HTML file (no script, font or image from the network) with each
bucket's share over time in both views and its uncertainty band, the dates where a namespace's
country changed, the latest table, coverage and the provenance of every published run. The shares
come from the BI views only, so a reader role can make it; the country changes come from the runs'
archived mappings (`<data dir>/mappings/`), when the data dir is at hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
#: One colour per view (Okabe-Ito, colour-blind-safe); the origin line is dashed as well.
VIEW_STYLES = {
    "uploader": ("Uploader view: who uploaded the model", "#0072B2", ""),
    "origin": ("Origin view: who made the weights", "#D55E00", "5 3"),
}
#: One small chart per bucket, in SVG user units (it scales to its grid cell): plot margins for
#: the title (top), the share ticks (left) and the date labels (bottom).
WIDTH, HEIGHT = 440, 210
LEFT, RIGHT, TOP, BOTTOM = 48, 14, 30, 26
DATE_LABELS = 4  # at most, along each chart's x axis

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
    """Checksums and run ids by their first 12 characters, like `hubshare runs`; counts with
    thousands separators."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    shown = str(value)
    return shown[:12] if name.endswith(("sha256", "run_id")) else shown


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round ticks (1, 2, 2.5 or 5 times a power of ten apart) covering [low, high] in about
    `count` steps, never below zero; a flat series gets a little room around it."""
    if high - low < 1e-4:
        room = max(0.005, high * 0.1)
        low, high = low - room, high + room
    low = max(low, 0.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(n * step, 12) for n in range(first, last + 1)]


def percent_labels(ticks: list[float]) -> list[str]:
    """The ticks as percentages with the fewest decimals that tell them apart exactly."""
    decimals = next(
        (d for d in range(4) if all(abs(round(t * 100, d) - t * 100) < 1e-7 for t in ticks)), 4
    )
    return [f"{t:.{decimals}%}" for t in ticks]


def date_ticks(dates: list[date], count: int = DATE_LABELS) -> list[date]:
    """Up to `count` published dates spread evenly in time along the axis, first and last
    included, so every label sits on a real snapshot."""
    if len(dates) <= count:
        return dates
    span = (dates[-1] - dates[0]).days
    targets = [dates[0] + timedelta(days=round(span * n / (count - 1))) for n in range(count)]

    def nearest(target: date) -> date:
        return min(dates, key=lambda day: abs((day - target).days))

    return sorted({nearest(target) for target in targets})


def _move_markers(
    moves: tuple[CountryMove, ...],
    bucket: str,
    x: Callable[[date], float],
) -> list[str]:
    """A dashed vertical line on each date where namespaces changed country, all of them in its
    tooltip (<title>); labelled in the chart of a bucket a namespace left or joined."""
    by_day: dict[date, list[CountryMove]] = {}
    for move in moves:
        by_day.setdefault(move.day, []).append(move)
    parts = []
    middle = (LEFT + WIDTH - RIGHT) / 2
    for index, (day, found) in enumerate(sorted(by_day.items())):
        named = "; ".join(map(str, found))
        here = [m for m in found if bucket in (m.country_from, m.country_to)]
        label = ""
        if here:
            text = str(here[0]) + (f" (+{len(here) - 1})" if len(here) > 1 else "")
            anchor = "end" if x(day) > middle else "start"
            shift = -3 if anchor == "end" else 3
            label = (
                f'<text x="{x(day) + shift:.1f}" y="{TOP + 10 + 11 * (index % 3):.1f}" '
                f'text-anchor="{anchor}" class="marker-label">{escape(text)}</text>'
            )
        parts.append(
            f'<g class="mapping-change" data-date="{day}"><title>{day}: {escape(named)}</title>'
            f'<line x1="{x(day):.1f}" x2="{x(day):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
            f'class="marker"/>{label}</g>'
        )
    return parts


def _bucket_chart(
    series: pl.DataFrame, bucket: str, dates: list[date], moves: tuple[CountryMove, ...] = ()
) -> str:
    """One bucket's share over time at its own scale (round ticks around its lines and bands):
    a line and [low, high] band per view, dated x labels, the value of each point on hover and a
    marker on each date where a namespace's country changed."""
    own = series.filter(pl.col("country") == bucket)
    lows = own.select(pl.min_horizontal("share", pl.col("low").fill_null(pl.col("share"))).min())
    highs = own.select(pl.max_horizontal("share", pl.col("high").fill_null(pl.col("share"))).max())
    ticks = nice_ticks(float(lows.item()), float(highs.item()))
    bottom_value, top_value = ticks[0], ticks[-1]
    span = max((dates[-1] - dates[0]).days, 1)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        share_of_span = (day - dates[0]).days / span if len(dates) > 1 else 0.5
        return LEFT + plot_width * share_of_span

    def y(value: float) -> float:
        return TOP + plot_height * (top_value - value) / (top_value - bottom_value)

    latest = own.filter(
        (pl.col("snapshot_date") == dates[-1]) & (pl.col("attribution") == "uploader")
    )["share"]
    headline = f" — {latest[0]:.2%} on {dates[-1]}" if len(latest) else ""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'data-bucket="{escape(bucket)}" role="img" '
        f'aria-label="{escape(bucket)}: share of downloads over time, both views">',
        f'<text x="{LEFT}" y="18" class="title">{escape(bucket)}{headline}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" class="plot"/>',
    ]
    for tick, label in zip(ticks, percent_labels(ticks), strict=True):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'class="grid"/><text x="{LEFT - 5}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'class="axis">{label}</text>'
        )
    labelled = date_ticks(dates)
    for day in labelled:
        ends = {dates[0]: "start", dates[-1]: "end"} if len(dates) > 1 else {}
        anchor = ends.get(day, "middle")  # the end labels stay inside the chart
        parts.append(
            f'<line x1="{x(day):.1f}" x2="{x(day):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM + 4}" '
            f'class="grid"/><text x="{x(day):.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}" class="axis date">{day}</text>'
        )
    parts += _move_markers(moves, bucket, x)
    radius = 2.5 if len(dates) <= 60 else 1.2  # a long history: dots would hide the line
    for view, (label, colour, dashes) in VIEW_STYLES.items():
        rows = (
            own.filter(pl.col("attribution") == view)
            .sort("snapshot_date")
            .select("snapshot_date", "share", "low", "high", "downloads")
            .rows()
        )
        if not rows:  # a bucket of the other view only (e.g. INTL has no origin downloads)
            continue
        dash = f' stroke-dasharray="{dashes}"' if dashes else ""
        band = [(d, lo, hi) for d, _, lo, hi, _ in rows if lo is not None and hi is not None]
        if band:
            upper = " ".join(f"{x(d):.1f},{y(hi):.1f}" for d, _, hi in band)
            lower = " ".join(f"{x(d):.1f},{y(lo):.1f}" for d, lo, _ in reversed(band))
            parts.append(
                f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.1" '
                f'stroke="{colour}" stroke-opacity="0.6" stroke-width="0.8"{dash} '
                f'data-bucket="{escape(bucket)}" data-view="{view}" class="band"/>'
            )
        line = " ".join(f"{x(d):.1f},{y(s):.1f}" for d, s, _, _, _ in rows)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash} '
            f'data-bucket="{escape(bucket)}" data-view="{view}" class="line"/>'
        )
        for d, s, lo, hi, downloads in rows:
            band_text = "" if lo is None or hi is None else f" (range {lo:.2%}–{hi:.2%})"
            parts.append(
                f'<circle cx="{x(d):.1f}" cy="{y(s):.1f}" r="{radius}" fill="{colour}" '
                f'class="point"><title>{escape(bucket)}, {label.split(":")[0].lower()}, {d}: '
                f"{s:.2%}{band_text}, {downloads:,} downloads</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    """What the colours and strokes of every chart mean, once above them."""
    items = "".join(
        f'<span class="key"><svg width="28" height="12" aria-hidden="true">'
        f'<rect x="0.5" y="0.5" width="27" height="11" fill="{colour}" fill-opacity="0.1" '
        f'stroke="{colour}" stroke-opacity="0.6"/>'
        f'<line x1="0" x2="28" y1="6" y2="6" stroke="{colour}" stroke-width="2"'
        + (f' stroke-dasharray="{dashes}"' if dashes else "")
        + f"/></svg> {escape(label)}</span>"
        for label, colour, dashes in VIEW_STYLES.values()
    )
    marker = (
        '<span class="key"><svg width="12" height="14" aria-hidden="true"><line x1="6" x2="6" '
        'y1="0" y2="14" class="marker"/></svg> a namespace changed country in the mapping</span>'
    )
    return f'<p class="legend" id="legend">{items}{marker}</p>'


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


def bucket_order(shares: pl.DataFrame) -> list[str]:
    """Every bucket of the latest date, largest uploader-view share first."""
    latest = shares.filter(pl.col("snapshot_date") == shares["snapshot_date"].max())
    return (
        latest.filter(pl.col("attribution") == "uploader")
        .sort(["share", "country"], descending=[True, False])["country"]
        .to_list()
    )


def charted_buckets(shares: pl.DataFrame) -> list[str]:
    """The buckets the report charts: the largest TOP_BUCKETS of the latest date but UNKNOWN."""
    return [b for b in bucket_order(shares) if b != "UNKNOWN"][:TOP_BUCKETS]


def render_report(data: ReportData, generated_at: datetime | None = None) -> str:
    shares = data.shares
    latest_day = cast(date, shares["snapshot_date"].max())
    latest = shares.filter(pl.col("snapshot_date") == latest_day)
    order = bucket_order(shares)
    buckets = charted_buckets(shares)
    moves = data.moves or ()
    dates = sorted(shares["snapshot_date"].unique().to_list())
    charts = "".join(
        f"<figure>{_bucket_chart(shares, bucket, dates, moves)}</figure>" for bucket in buckets
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
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hubshare: download share by developer country, {first_day} to {latest_day}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; padding: 0 1em;
max-width: 940px; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
#runs-box {{ max-height: 32em; overflow-y: auto; }} /* a year of runs scrolls in its box */
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
#runs td, #runs th {{ padding: 2px 6px; font-size: 0.9em; white-space: nowrap; }}
#runs td:last-child {{ white-space: normal; overflow-wrap: anywhere; min-width: 8em; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
gap: 0.5em 1.5em; }}
figure {{ margin: 0; min-width: 0; }} figure svg {{ display: block; width: 100%; height: auto; }}
figcaption, .note {{ color: #555; font-size: 0.9em; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 0.3em 1.5em; font-size: 0.9em; }}
.key svg {{ vertical-align: middle; }}
.plot {{ fill: none; stroke: #ccc; }} .grid {{ stroke: #eee; }}
.axis {{ font-size: 11px; fill: #555; }} .title {{ font-size: 13px; font-weight: 600; }}
.point {{ stroke: transparent; stroke-width: 8; }}
.marker {{ stroke: #444; stroke-dasharray: 4 3; }} .marker-label {{ font-size: 10px; fill: #444; }}
</style></head><body>
<h1>Which countries' developers do open-model downloads go to?</h1>
<p class="note">Share of Hugging Face Hub downloads (the Hub's 30-day counter) by the developer's
country, from {len(dates)} published daily snapshots, {first_day} to
{latest_day}. Generated {generated} by <code>hubshare report</code>.</p>
<h2>Shares over time</h2>
<p class="note">One chart per bucket, each at its own scale (read its axis): lines are the
published share, bands its range over the contested mapping rows, the high end counting every
UNKNOWN download as possibly the bucket's. Hover a point for its value.</p>
{_legend()}
<div class="charts" id="charts">{charts}</div>
{moves_html}
<h2>Latest: {latest_day}</h2>
<div class="scroll"><table id="latest"><thead><tr><th>country</th><th>uploader view</th>
<th>range</th><th>origin view</th><th>range</th></tr></thead><tbody>
{table_rows}
</tbody></table></div>
<h2>Coverage</h2>
<p id="coverage">On {latest_day}, the mapping classifies {1 - unknown["uploader"]:.2%} of downloads
in the uploader view and {1 - unknown["origin"]:.2%} in the origin view; the rest is
<code>UNKNOWN</code> (an uploader not in the reference mapping, or an organisation whose country
no source states).</p>
<h2>Provenance</h2>
<p class="note">Each published run, with the SHA-256 (first 12 hex digits) of its raw snapshot,
mapping and share table; <code>hubshare reproduce RUN_ID</code> recomputes any of them.</p>
<div class="scroll" id="runs-box"><table id="runs"><thead><tr><th>date</th><th>version</th>
<th>run</th><th>models</th><th>downloads</th><th>raw</th><th>mapping</th><th>shares</th><th>code</th></tr>
</thead><tbody>
{runs}
</tbody></table></div>
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
    return save_report(read_report_data(engine, start, end, store), out)


def save_report(data: ReportData, out: Path) -> Path:
    """Render `data` into `out` atomically."""
    html = render_report(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def report_headline_markdown(data: ReportData, report_key: str, top: int = 15) -> str:
    """The report's headline for a Prefect artifact: the latest table with each bucket's change
    since the first date shown, and coverage; the HTML file itself stays in the data dir."""
    shares = data.shares
    dates = sorted(shares["snapshot_date"].unique().to_list())
    first_day, latest_day = dates[0], dates[-1]
    order = bucket_order(shares)
    cells: dict[tuple[str, str, date], tuple[float, float | None, float | None]] = {
        (view, country, day): (share, low, high)
        for view, country, day, share, low, high in shares.select(
            "attribution", "country", "snapshot_date", "share", "low", "high"
        ).rows()
    }

    def cell(view: str, country: str) -> tuple[str, str]:
        now = cells.get((view, country, latest_day))
        if now is None:
            return "", ""
        share, low, high = now
        shown = f"{share:.2%}" + ("" if low is None or high is None else f" ({low:.1%}–{high:.1%})")
        before = cells.get((view, country, first_day))
        change = "" if before is None else f"{(share - before[0]) * 100:+.2f} pp"
        return shown, change

    lines = [
        f"# hubshare report, {first_day} to {latest_day}",
        "",
        f"| country | uploader view (range) | since {first_day} | origin view (range) "
        f"| since {first_day} |",
        "|---|---:|---:|---:|---:|",
    ]
    for country in order[:top]:
        lines.append(
            f"| {country} | " + " | ".join(" | ".join(cell(v, country)) for v in VIEW_STYLES) + " |"
        )
    if len(order) > top:
        lines.append(f"| … {len(order) - top} more | | | | |")
    lines += [
        "",
        f"{len(dates)} published dates; pp: percentage points. Range: over the contested mapping "
        "rows, the high end counting every UNKNOWN download as possibly the bucket's. The charted "
        "series are in the run's `daily-report-series-<date>` table artifact; the HTML report is "
        f"`{report_key}` in the data dir (`hubshare report --out PATH` writes another).",
    ]
    return "\n".join(lines)


def report_series_rows(data: ReportData) -> list[dict[str, object]]:
    """The charts' data for a Prefect table artifact: one row per charted bucket, view and
    date, shares in percent."""
    series = (
        data.shares.filter(pl.col("country").is_in(charted_buckets(data.shares)))
        .sort("country", "attribution", "snapshot_date")
        .select(
            pl.col("country"),
            pl.col("attribution").alias("view"),
            pl.col("snapshot_date").cast(pl.String).alias("date"),
            *(
                (pl.col(name) * 100).round(3).alias(f"{label} (%)")
                for name, label in (("share", "share"), ("low", "low"), ("high", "high"))
            ),
            pl.col("downloads"),
        )
    )
    return series.to_dicts()
