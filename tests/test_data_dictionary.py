"""docs/warehouse.md is the schema module rendered (it cannot drift), lists each view's real
columns, and its example queries run on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from hubshare.fakehub import FakeHub
from schemas.data_dictionary import EXAMPLES, render_data_dictionary, view_columns
from schemas.warehouse import VIEWS

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DOC = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"


def test_the_data_dictionary_is_the_schema_rendered():
    assert DOC.read_text() == render_data_dictionary(), (
        "docs/warehouse.md is stale: uv run python -m schemas.data_dictionary > docs/warehouse.md"
    )
    # The documented command writes exactly the file.
    printed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "schemas.data_dictionary"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=DOC.parents[1],
    ).stdout
    assert printed == DOC.read_text()


def test_the_examples_run_and_the_views_have_the_listed_columns(
    env, warehouse_url, hand_models, monkeypatch
):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=date(2024, 1, 15), backdate=True)
    engine = create_engine(warehouse_url)
    with engine.connect() as connection:
        for name in VIEWS:
            actual = [c["name"] for c in inspect(connection).get_columns(name)]
            if view_columns(name) != ["snapshot_date", "version", "*"]:
                assert actual == view_columns(name), name
        monthly = connection.execute(text(next(iter(EXAMPLES.values())))).all()
        assert [(m, a) for m, a, _, _ in monthly] == [
            ("2024-01", "origin"),
            ("2024-01", "uploader"),
        ]
        by_view = {a: (cn, us) for _, a, cn, us in monthly}
        assert by_view["uploader"] == (pytest.approx(1500 / 3010), pytest.approx(840 / 3010))
        for sql in EXAMPLES.values():
            connection.execute(text(sql)).all()
