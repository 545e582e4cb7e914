"""Every rendering of a share table, in one place: the terminal tables of `hubshare shares` and
`hubshare demo`, the markdown of the daily run's artifact and the HTML of the report's latest
table. Frames in, text (or a rich Table to print) out: no reads, no writes."""

from __future__ import annotations

from datetime import date
from html import escape

import polars as pl
from rich.table import Table

from tasks.shares import DEFINITION


def share_range(low: float | None, high: float | None) -> str:
    """`low–high` in percent (one decimal: a range, not a measurement), or `n/a` for runs
    published before ranges existed."""
    if low is None or high is None:
        return "n/a"
    return f"{low * 100:.1f}–{high * 100:.1f}%"


def by_default_text(by_default: int | None) -> str:
    """The downloads that rest on the account-type default, or `n/a` for runs published before
    it was computed."""
    return "n/a" if by_default is None else f"{by_default:,}"


def by_default_caption(rows: pl.DataFrame) -> str:
    """Which downloads rest on the account-type default (namespaces with no reviewed mapping
    row: a user account is INTL, any other UNKNOWN), per bucket that has any."""
    resting = rows.filter(
        pl.col("downloads_by_default").is_null() | (pl.col("downloads_by_default") > 0)
    )
    if rows["downloads_by_default"].null_count():
        parts = "n/a (published before it was computed)"
    elif resting.height == 0:
        parts = "none"
    else:
        parts = ", ".join(
            f"{country} {by_default:,} of {downloads:,}"
            for country, by_default, downloads in resting.select(
                "country", "downloads_by_default", "downloads"
            ).rows()
        )
    return f"by default (no reviewed mapping row): {parts}"


def one_view_table(rows: pl.DataFrame, attribution: str) -> Table:
    """One view of one published run (`published_shares` columns), as `hubshare shares`
    prints it."""
    first = rows.row(0, named=True)
    # A span computed on demand has no published version.
    version = "computed now" if first["version"] is None else f"v{first['version']}"
    table = Table(
        title=f"Download share by developer country — {first['snapshot_date']} "
        f"{version}, {attribution} view, {first['definition']}"
        + (f" ({first['cohort']})" if first["cohort"] != "all" else "")
    )
    table.add_column("country")
    table.add_column("downloads", justify="right")
    table.add_column("share", justify="right")
    table.add_column("range", justify="right")
    for country, downloads, share, low, high in rows.select(
        "country", "downloads", "share", "share_low", "share_high"
    ).rows():
        table.add_row(country, f"{downloads:,}", f"{share:.2%}", share_range(low, high))
    table.caption = (
        "range: over the contested mapping rows' answers; the high end also counts every "
        "UNKNOWN download as possibly the bucket's (docs/mapping.md)\n" + by_default_caption(rows)
    )
    return table


def both_views_table(
    uploader: pl.DataFrame, origin: pl.DataFrame, day: date, top: int = 15
) -> Table:
    """Both views of one published run (`published_shares` frames) side by side, the largest
    buckets first, the rest summed in one row; then how many of each view's downloads rest on
    the account-type default (a row, and per bucket in the caption)."""
    wide = (
        uploader.select("country", "downloads", "share", "share_low", "share_high")
        .join(
            origin.select(
                "country",
                pl.col("downloads").alias("o_downloads"),
                pl.col("share").alias("o_share"),
                pl.col("share_low").alias("o_low"),
                pl.col("share_high").alias("o_high"),
            ),
            on="country",
            how="full",
            coalesce=True,
        )
        .fill_null(0)
        .sort(["downloads", "country"], descending=[True, False])
    )
    first = uploader.row(0, named=True)
    table = Table(
        title=f"Share of Hub downloads (30 days) by developer country, {day} v{first['version']}",
        caption="uploader: who uploaded the model; origin: who made the weights (through "
        "base-model lineage); range: over the contested mapping rows, the high end counting "
        "every UNKNOWN download as possibly the bucket's\n"
        f"uploader view {by_default_caption(uploader)}\n"
        f"origin view {by_default_caption(origin)}",
    )
    for name, justify in (
        ("country", "left"),
        ("uploader view", "right"),
        ("range", "right"),
        ("origin view", "right"),
        ("range ", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in wide.head(top).iter_rows(named=True):
        table.add_row(
            row["country"],
            f"{row['share']:.2%}",
            share_range(row["share_low"], row["share_high"]),
            f"{row['o_share']:.2%}",
            share_range(row["o_low"], row["o_high"]),
        )
    rest = wide.slice(top)
    if rest.height:
        table.add_row(
            f"{rest.height} others",
            f"{rest['share'].sum():.2%}",
            "",
            f"{rest['o_share'].sum():.2%}",
            "",
        )
    table.add_row(
        "total downloads",
        f"{wide['downloads'].sum():,}",
        "",
        f"{wide['o_downloads'].sum():,}",
        "",
        style="bold",
    )
    # A short label: the country column keeps its width (scripts read the rows above).
    table.add_row(
        "by default",
        by_default_text(_by_default_total(uploader)),
        "",
        by_default_text(_by_default_total(origin)),
        "",
    )
    return table


def _by_default_total(rows: pl.DataFrame) -> int | None:
    """A view's downloads resting on the account-type default (None: published before it was
    computed)."""
    column = rows["downloads_by_default"]
    return None if column.null_count() else int(column.sum())


def share_table_markdown(country_share: pl.DataFrame, title: str, top: int = 15) -> str:
    """Both views side by side, buckets ordered by the uploader view's downloads; then the
    downloads of each bucket that rest on the account-type default."""
    cells: dict[str, dict[str, str]] = {}
    order: dict[str, float] = {}
    for attribution, bucket, share, low, high in country_share.select(
        "attribution", "bucket", "share", "share_low", "share_high"
    ).rows():
        cells.setdefault(bucket, {})[attribution] = f"{share:.2%} ({low:.2%}–{high:.2%})"
        if attribution == "uploader":
            order[bucket] = share
    ranked = sorted(cells, key=lambda bucket: (-order.get(bucket, 0.0), bucket))
    lines = [
        f"# {title}",
        "",
        "| country | uploader view (range) | origin view (range) |",
        "|---|---:|---:|",
    ]
    for bucket in ranked[:top]:
        views = cells[bucket]
        lines.append(f"| {bucket} | {views.get('uploader', '')} | {views.get('origin', '')} |")
    if len(ranked) > top:
        lines.append(f"| … {len(ranked) - top} more | | |")
    lines += [
        "",
        "Range: over the contested mapping rows' two answers; the high end also counts every "
        "UNKNOWN download as possibly the bucket's.",
        "",
        *by_default_markdown(country_share, ranked),
    ]
    return "\n".join(lines)


def by_default_markdown(country_share: pl.DataFrame, ranked: list[str]) -> list[str]:
    """The buckets with downloads resting on the account-type default, in `ranked` order: a
    table of `downloads_by_default` of `downloads` per view."""
    heading = (
        "Resting on the default (`downloads_by_default`: namespaces with no reviewed mapping row; "
        "a user account is INTL, any other UNKNOWN)"
    )
    if country_share["downloads_by_default"].null_count():
        return [f"{heading}: n/a (computed before it existed)."]
    cells: dict[str, dict[str, str]] = {}
    for attribution, bucket, downloads, by_default in (
        country_share.filter(pl.col("downloads_by_default") > 0)
        .select("attribution", "bucket", "downloads", "downloads_by_default")
        .rows()
    ):
        cells.setdefault(bucket, {})[attribution] = f"{by_default:,} of {downloads:,}"
    if not cells:
        return [f"{heading}: none."]
    lines = [f"{heading}:", "", "| country | uploader view | origin view |", "|---|---:|---:|"]
    for bucket in [bucket for bucket in ranked if bucket in cells]:
        views = cells[bucket]
        lines.append(f"| {bucket} | {views.get('uploader', '0')} | {views.get('origin', '0')} |")
    return lines


def concentration_markdown(concentration: pl.DataFrame) -> str:
    rows = concentration.filter((pl.col("definition") == DEFINITION) & (pl.col("cohort") == "all"))
    parts = [
        f"{attribution} view: HHI {hhi:,.0f}, Gini {gini:.3f}, top-10 organisations "
        f"{top10:.1%} of {orgs:,}"
        for attribution, orgs, hhi, gini, top10 in rows.select(
            "attribution", "orgs", "hhi", "gini", "top10_share"
        )
        .sort("attribution", descending=True)
        .rows()
    ]
    return "\n\nConcentration over organisations — " + "; ".join(parts) if parts else ""


def latest_table_html_rows(latest: pl.DataFrame, order: list[str]) -> str:
    """The report's latest table: one `<tr>` per bucket (`order` first, then the buckets of
    the origin view only), each view's share and range. `latest` has the report's columns
    (attribution, country, share, low, high) for one date."""
    wide = latest.pivot(on="attribution", index="country", values=["share", "low", "high"])
    table_rows = []
    for country in order + [c for c in wide["country"].to_list() if c not in order]:
        row = wide.filter(pl.col("country") == country).row(0, named=True)
        cells = [f"<td>{escape(country)}</td>"]
        for view in ("uploader", "origin"):
            share, low, high = (
                row.get(f"share_{view}"),
                row.get(f"low_{view}"),
                row.get(f"high_{view}"),
            )
            cells.append(f"<td>{'' if share is None else f'{share:.2%}'}</td>")
            band = "n/a" if low is None or high is None else f"{low:.1%}–{high:.1%}"
            cells.append(f"<td>{band if share is not None else ''}</td>")
        table_rows.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(table_rows)


def review_queue_table(rows: pl.DataFrame, day: date, version: int) -> Table:
    """A run's review queue (`published_review_queue` columns), as `hubshare mapping todo`
    prints it: the namespaces to add to the mapping next, largest first."""
    table = Table(
        title=f"Namespaces without a reviewed country — {day} v{version}, largest first",
        caption="type: the account type the Hub gave (user | org | vanished), blank when not typed "
        "yet; share: of all the run's downloads (30 days). Add a reviewed row to "
        "data/org_country.csv (docs/mapping.md)",
    )
    # On a narrow terminal the namespaces (what a maintainer looks up), numbers and dates stay
    # whole; the Hub's display names fold onto more lines.
    longest = max((len(name) for name in rows["namespace"].to_list()), default=0)
    for name, justify in (
        ("#", "right"),
        ("namespace", "left"),
        ("type", "left"),
        ("fullname", "left"),
        ("downloads", "right"),
        ("share", "right"),
        ("models", "right"),
        ("first seen", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name != "fullname",
            overflow="fold" if name == "fullname" else "ellipsis",
            min_width=min(longest, 40) if name == "namespace" else None,
        )
    for rank, (
        namespace,
        account_type,
        fullname,
        downloads,
        share,
        models,
        first_seen,
    ) in enumerate(
        rows.select(
            "namespace",
            "account_type",
            "fullname",
            "downloads",
            "share",
            "models",
            "first_seen",
        ).rows(),
        start=1,
    ):
        table.add_row(
            str(rank),
            namespace,
            account_type or "",
            fullname or "",
            f"{downloads:,}",
            f"{share:.3%}",
            f"{models:,}",
            str(first_seen),
        )
    return table
