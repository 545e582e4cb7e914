"""The warehouse's data dictionary (`docs/warehouse.md`), rendered from this schema module so that
the two cannot drift: `uv run python -m schemas.data_dictionary > docs/warehouse.md`, and
`tests/test_data_dictionary.py` fails when the file differs."""

from __future__ import annotations

import re

from sqlmodel import SQLModel

from schemas.warehouse import VIEWS, view_column_comment, view_comment

#: Example queries, each run by the tests on SQLite and PostgreSQL.
EXAMPLES: dict[str, str] = {
    "China vs US share by month, both views (the daily headline, averaged over the month's "
    "published dates)": """
SELECT substr(CAST(snapshot_date AS TEXT), 1, 7) AS month, attribution,
       AVG(CASE WHEN country = 'CN' THEN share END) AS china,
       AVG(CASE WHEN country = 'US' THEN share END) AS us
FROM published_country_share
WHERE definition = 'downloads_30d' AND cohort = 'all'
GROUP BY substr(CAST(snapshot_date AS TEXT), 1, 7), attribution
ORDER BY month, attribution""",
    "The latest shares with their uncertainty range, largest first": """
SELECT attribution, country, downloads, share, share_low, share_high
FROM latest_country_share
WHERE definition = 'downloads_30d' AND cohort = 'all'
ORDER BY attribution, downloads DESC, country""",
    "Runs that did not publish, and why": """
SELECT snapshot_date, version, status, status_reason
FROM run_history
WHERE status <> 'published'
ORDER BY snapshot_date, version""",
}
INTERNAL_TABLES = ("view_definition", "reader_role")


def _cell(text: object) -> str:
    return str(text or "").replace("|", "\\|")


def view_columns(name: str) -> list[str]:
    """The output column names of a view's SELECT, in order."""
    select = VIEWS[name].split("FROM", 1)[0].replace("SELECT", "", 1)
    columns: list[str] = []
    depth, current = 0, ""
    for char in select:  # split on top-level commas only (CASE ... END has none, but be safe)
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            columns.append(current)
            current = ""
        else:
            current += char
    columns.append(current)
    names = []
    for column in columns:
        column = " ".join(column.split())
        alias = re.search(r"\bAS (\w+)$", column)
        names.append(alias.group(1) if alias else column.split(".")[-1])
    return names


def render_data_dictionary() -> str:
    lines = [
        "# The warehouse: data dictionary",
        "",
        "Rendered from `schemas/warehouse.py` by `uv run python -m schemas.data_dictionary > "
        "docs/warehouse.md` (a test fails when this file differs). On PostgreSQL the same "
        "descriptions are in the catalogue, so a BI tool shows them next to each view and column.",
        "",
        "BI tools should read the **views**: they join each snapshot date's published run for "
        "you. A role made by `hubshare db grant-reader ROLE` can read exactly these views (and "
        "the schema revision); `hubshare shares` and `hubshare runs` work with its URL.",
        "",
        "## Views",
    ]
    for name in sorted(VIEWS):
        lines += [
            "",
            f"### `{name}`",
            "",
            _cell(view_comment(name)),
            "",
            "| column | description |",
        ]
        lines.append("|---|---|")
        for column in view_columns(name):
            if column == "*":
                lines.append("| *every column of `model_fact`* | see the table below |")
                continue
            lines.append(f"| `{column}` | {_cell(view_column_comment(column))} |")
    lines += ["", "## Tables", ""]
    for table in sorted(SQLModel.metadata.tables.values(), key=lambda t: t.name):
        internal = " (internal)" if table.name in INTERNAL_TABLES else ""
        lines += [f"### `{table.name}`{internal}", "", str(table.comment or ""), ""]
        lines += ["| column | type | null | description |", "|---|---|---|---|"]
        for col in table.columns:
            key = " (key)" if col.primary_key else ""
            nullable = "yes" if col.nullable else "no"
            lines.append(f"| `{col.name}`{key} | {col.type} | {nullable} | {_cell(col.comment)} |")
        lines.append("")
    lines += ["## Example queries", ""]
    for title, sql in EXAMPLES.items():
        lines += [f"{title}:", "", "```sql", sql.strip() + ";", "```", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_data_dictionary(), end="")
