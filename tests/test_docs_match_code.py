"""What README.md, docs/operations.md and .env.example say about settings, deployments, help and
exit codes is what the code does."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
import yaml

from hubshare.cli import app
from hubshare.resources import IMPORT_ROOT as PROJECT_ROOT
from hubshare.settings import Settings
from tests.conftest import run_hubshare

README = (PROJECT_ROOT / "README.md").read_text()
OPERATIONS = (PROJECT_ROOT / "docs" / "operations.md").read_text()


def setting_names() -> list[str]:
    return [str(field.alias) for field in Settings.model_fields.values()]


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_is_in_the_readme_table_and_env_example(name):
    table_rows = [line for line in README.splitlines() if line.startswith("| `")]
    assert any(f"`{name}`" in row.split(" | ")[0] for row in table_rows), name
    example = (PROJECT_ROOT / ".env.example").read_text()
    assert re.search(rf"^#? ?{name}=", example, flags=re.MULTILINE), name


def test_the_deployment_table_gives_the_yaml_concurrency_limits():
    spec = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        flow = deployment["entrypoint"].rsplit(":", 1)[1]
        [row] = [
            line
            for line in OPERATIONS.splitlines()
            if line.startswith(f"| `{flow}/{deployment['name']}` |")
        ]
        assert row.strip(" |").split(" | ")[-1] == str(deployment["concurrency_limit"]), row


def command_paths() -> list[tuple[str, ...]]:
    """Every command and command group of the CLI, as the words that name it."""
    found: list[tuple[str, ...]] = [()]

    def walk(command: Any, prefix: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return found


@pytest.mark.parametrize("words", command_paths(), ids=lambda words: " ".join(words) or "hubshare")
def test_help_exits_0(words, env):
    """`--help` is never an error, whatever the command checks first (here the mapping is
    missing: `mapping check` would exit 5)."""
    shown = run_hubshare(*words, "--help", env={"HUBSHARE_MAPPING": str(env / "missing.csv")})
    assert shown.returncode == 0, shown.stderr
    assert "Usage:" in shown.stdout and not shown.stderr


#: Read commands with what they need besides a warehouse.
READ_COMMANDS = (
    ("shares",),
    ("runs",),
    ("explain", "--from", "2024-01-14", "--to", "2024-01-15"),
    ("reproduce", "0c96bcd6-ccb6-4bea-b900-d366238eb866"),
    ("mapping", "todo"),
    ("report", "--out", "report.html"),
)


@pytest.mark.parametrize("words", READ_COMMANDS, ids=lambda words: words[0])
def test_read_commands_on_a_missing_warehouse_exit_6(words, env):
    """docs/operations.md: read commands never write; a missing warehouse is exit 6 (the README's
    warehouse code) with the command that makes one."""
    assert "missing or behind they exit 6" in " ".join(OPERATIONS.split())
    result = run_hubshare(*words)
    assert result.returncode == 6, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no warehouse at ") and "hubshare db upgrade" in line
    assert not (env / "warehouse.db").exists()  # nothing was created
