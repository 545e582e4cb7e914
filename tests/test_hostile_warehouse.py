"""A careless operator and a hostile warehouse (issue 19, breaks 4, 6, 7 and the warehouse part
of 8): `db grant-reader` refuses roles that are not readers, a run failed by a locked warehouse
still gets its `etl_run` row, no secret of a database URL is ever printed, and a database error
escaping a read (a role without the grant, a killed connection) is one line and exit 6."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from sqlalchemy import create_engine

from hubshare.fakehub import FakeHub
from hubshare.provenance import public_url
from hubshare.read_warehouse import list_runs
from tests.conftest import PG_ADMIN_URL, run_hubshare
from tests.test_reader_role import as_role, published_pg, role  # noqa: F401 - fixtures

DAY = date(2024, 1, 15)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's only stderr line, an `error:` line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- 7: secrets of a database URL -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@127.0.0.1:1/db?password=SECRET",
            "postgresql://u@127.0.0.1:1/db?password=***",
        ),
        (
            "postgresql://u:pw@h/db?sslpassword=S2&sslkey=/etc/k.key&sslmode=require",
            "postgresql://u:***@h/db?sslpassword=***&sslkey=/etc/k.key&sslmode=require",
        ),
        (
            "postgresql://h/db?token=T&access_key=A&secret=S&key=K&application_name=etl",
            "postgresql://h/db?token=***&access_key=***&secret=***&key=***&application_name=etl",
        ),
        ("sqlite:////srv/hubshare/warehouse.db", "sqlite:////srv/hubshare/warehouse.db"),
    ],
)
def test_a_database_url_is_shown_without_any_secret(url, shown):
    assert public_url(url) == shown


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (("runs",), "postgresql://u@127.0.0.1:1/db?password=QUERYSECRET"),
        (("db", "upgrade"), "postgresql://u:USERSECRET@127.0.0.1:1/db?sslpassword=QUERYSECRET"),
        (("shares",), "postgresql://u@127.0.0.1:1/db?sslpassword=QUERYSECRET&token=QUERYSECRET"),
        (("runs",), "postgresql://u:USERSECRET@127.0.0.1:1/db?password=QUERYSECRET&port=x"),
    ],
)
def test_a_failing_command_never_prints_a_secret_of_the_url(env, command, url):
    result = run_hubshare(*command, env={"HUBSHARE_WAREHOUSE_URL": url})
    assert result.returncode == 6, result.stderr
    line = one_error_line(result)
    assert "127.0.0.1:1/db" in line and "***" in line
    assert "SECRET" not in result.stdout + result.stderr


def test_db_upgrade_names_the_warehouse_without_its_secret(env, postgres_url):
    # Trust authentication ignores the password: the command succeeds and says where.
    url = f"{postgres_url}?password=QUERYSECRET&sslpassword=OTHERSECRET&application_name=etl"
    result = run_hubshare("db", "upgrade", env={"HUBSHARE_WAREHOUSE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    name = postgres_url.rsplit("/", 1)[1]
    # (SQLAlchemy renders the query sorted by key)
    assert f"/{name}?application_name=etl&password=***&sslpassword=*** is at revision" in (
        result.stderr
    )


# --- 4: grant-reader refuses roles that are not readers -------------------------------------


@pytest.fixture
def upgraded_pg(env, postgres_url: str, monkeypatch) -> str:
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", postgres_url)
    assert run_hubshare("db", "upgrade").returncode == 0
    return postgres_url


@pytest.fixture
def other_role(upgraded_pg) -> Iterator[str]:
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(upgraded_pg, autocommit=True) as admin:
        admin.execute(f'REASSIGN OWNED BY "{name}" TO CURRENT_USER')
        admin.execute(f'DROP OWNED BY "{name}"')
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def reader_roles(url: str) -> list[tuple[str]]:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT role_name FROM reader_role").fetchall()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("role_name", "why"),
    [
        ("public", "'public' is a reserved name"),
        ("none", "'none' is a reserved name"),
        ("current_user", "'current_user' is a reserved name"),
        ("session_user", "'session_user' is a reserved name"),
        ("current_role", "'current_role' is a reserved name"),
        ("pg_read_all_data", "pg_* roles are PostgreSQL's own"),
        ("postgres", "it is the role this HUBSHARE_WAREHOUSE_URL connects as"),
    ],
)
def test_grant_reader_refuses_reserved_and_own_roles(upgraded_pg, role_name, why):
    result = run_hubshare("db", "grant-reader", role_name)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: role {role_name} cannot be a reader: ") and why in line
    assert reader_roles(upgraded_pg) == []


@pytest.mark.postgres
def test_grant_reader_refuses_a_superuser_and_the_warehouse_owner(upgraded_pg, other_role):
    with psycopg.connect(upgraded_pg, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{other_role}" SUPERUSER NOLOGIN')
    superuser = run_hubshare("db", "grant-reader", other_role)
    assert superuser.returncode == 2, superuser.stderr
    assert "it is a superuser" in one_error_line(superuser)

    with psycopg.connect(upgraded_pg, autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{other_role}" NOSUPERUSER')
        admin.execute(f'ALTER TABLE etl_run OWNER TO "{other_role}"')
    owner = run_hubshare("db", "grant-reader", other_role)
    assert owner.returncode == 2, owner.stderr
    assert "it owns the warehouse's tables" in one_error_line(owner)
    assert reader_roles(upgraded_pg) == []
    # Nothing was revoked: the owner still owns and the ETL still reads its table.
    with psycopg.connect(upgraded_pg) as connection:
        assert connection.execute("SELECT count(*) FROM etl_run").fetchone() == (0,)


# --- 8: reads that escape the warehouse module ----------------------------------------------


@pytest.mark.postgres
@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_explain_and_reproduce_as_the_reader_say_what_they_cannot_read(
    published_pg,  # noqa: F811 - the fixture
    role,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", published_pg)
    assert run_hubshare("db", "grant-reader", role).returncode == 0
    [run_id] = list_runs(create_engine(published_pg), DAY)["run_id"].to_list()
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", as_role(published_pg, role))
    for command in (
        ("reproduce", run_id[:8]),
        ("explain", "--from", "2024-01-14", "--to", DAY.isoformat()),
    ):
        result = run_hubshare(*command)
        assert result.returncode == 6, result.stderr
        line = one_error_line(result)
        assert "permission denied for table" in line, line
        assert "run them with the warehouse owner's HUBSHARE_WAREHOUSE_URL" in line


@pytest.mark.postgres
def test_a_connection_killed_during_a_read_is_one_line_and_exit_6(upgraded_pg):
    """`runs` waits on a table another session locked; that session kills its connection."""
    name = upgraded_pg.rsplit("/", 1)[1]
    with psycopg.connect(upgraded_pg) as locker:
        locker.execute("LOCK TABLE etl_run IN ACCESS EXCLUSIVE MODE")
        reader = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "hubshare.cli", "runs"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        waiting = None
        while waiting is None and time.monotonic() < deadline and reader.poll() is None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                    "AND wait_event_type = 'Lock'",
                    (name,),
                ).fetchone()
            time.sleep(0.1)
        assert waiting is not None, "the read never waited on the lock"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", waiting)
        out, err = reader.communicate(timeout=120)
    result = subprocess.CompletedProcess(reader.args, reader.returncode, out, err)
    assert result.returncode == 6, err
    line = one_error_line(result)
    assert f"/{name} lost or refused the connection: terminating connection" in line


# --- 6: a run failed by a locked warehouse still gets its row --------------------------------


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_failed_by_a_locked_warehouse_is_recorded_by_the_next_run(env, hand_models):
    warehouse = env / "warehouse.db"
    assert run_hubshare("db", "upgrade").returncode == 0
    args = ("run", "--date", DAY.isoformat(), "--backdate")
    with FakeHub(hand_models) as hub:
        locker = sqlite3.connect(warehouse, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            locked = run_hubshare(*args, env={"HF_ENDPOINT": hub.url})
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert locked.returncode == 6, locked.stderr
        assert "database is locked" in one_error_line(locked)
        [failed] = [folder.name for folder in (env / "runs").iterdir()]
        assert list_runs(create_engine(f"sqlite:///{warehouse}"), DAY).height == 0

        after = run_hubshare(*args, env={"HF_ENDPOINT": hub.url})
    assert after.returncode == 0, after.stderr
    assert f"Settled an unrecorded run {failed} of {DAY}" in after.stderr
    assert "recorded as version 1 failed" in after.stderr
    runs = list_runs(create_engine(f"sqlite:///{warehouse}"), DAY)
    assert runs.select("version", "run_id", "status").rows()[0] == (1, failed, "failed")
    assert runs["status"].to_list() == ["failed", "published"]
    assert "database is locked" in runs["status_reason"][0]
    assert not (env / "runs" / failed).exists()
