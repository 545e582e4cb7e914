"""The wheel is what a worker image installs: built, installed in a fresh virtual environment and
run from a folder that is no checkout, it finds its reference data (mapping, cross-checks, the
demo's sample, the expectation suites and migrations) inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from hubshare.resources import IMPORT_ROOT, checkout_root, reference_file


def _uv() -> str:
    # `uv run` names itself in UV; a plain `pytest` finds it on PATH.
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("the wheel test needs uv (README: the project is set up with uv)")
    return found


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{args[:3]} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtual environment holding only the built wheel and its
    dependencies (at the lock's versions: the test is about the package, not the resolver).
    It lives in a git repository of its own, as a project's `.venv` would."""
    uv, tmp = _uv(), tmp_path_factory.mktemp("wheel")
    git = ["git", "-C", str(tmp), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "other"], check=True)
    _run(uv, "build", "--wheel", "--out-dir", tmp / "dist", "--quiet", cwd=IMPORT_ROOT)
    (wheel,) = (tmp / "dist").glob("hubshare-*.whl")
    constraints = tmp / "constraints.txt"
    _run(
        *(uv, "export", "--locked", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet"),
        *("--format", "requirements-txt", "--output-file", constraints),
        cwd=IMPORT_ROOT,
    )
    venv = tmp / "venv"
    _run(uv, "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp)
    _run(
        *(uv, "pip", "install", "--quiet", "--python", venv / "bin" / "python"),
        *("--constraint", constraints, wheel),
        cwd=tmp,
    )
    return venv / "bin"


def _clean_env(tmp: Path) -> dict[str, str]:
    """No setting of this session's (mapping, data dir, warehouse, Prefect server) leaks in."""
    kept = {name: os.environ[name] for name in ("PATH", "LANG", "TZ") if name in os.environ}
    return kept | {"HOME": str(tmp), "PREFECT_HOME": str(tmp / "prefect")}


def test_checkout_files_win_over_the_shipped_copies():
    assert checkout_root() == IMPORT_ROOT
    assert reference_file("data/org_country.csv") == IMPORT_ROOT / "data" / "org_country.csv"


def test_installed_wheel_checks_the_mapping_and_runs_the_demo_from_any_folder(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(tmp_path)

    check = _run(installed / "hubshare", "mapping", "check", cwd=elsewhere, env=env)
    assert "namespaces, valid (sha256" in check
    assert "reference_data/data/org_country.csv" in check  # the package's copy, no checkout

    demo = _run(
        installed / "hubshare", "demo", "--data-dir", elsewhere / "demo", cwd=elsewhere, env=env
    )
    assert "Share of Hub downloads (30 days) by developer country, 2024-09-20 v1" in demo
    assert "uploader view" in demo and "origin view" in demo and "total downloads" in demo
    assert (elsewhere / "demo" / "warehouse.db").exists()
    assert sorted(path.name for path in elsewhere.iterdir()) == ["demo"]


def test_installed_code_version_never_asks_the_git_repository_around_it(installed, tmp_path):
    """The environment sits in another repository (the fixture's): its commit is not ours."""
    printed = _run(
        installed / "python",
        "-c",
        "from hubshare.provenance import code_version; print(code_version())",
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert printed.strip() == version("hubshare")
