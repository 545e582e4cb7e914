"""Where the files hubshare reads at run time live: the reference mapping, the cross-check
lists, the demo's sample, the deployments; the expectation suites and migrations of `schemas`.

A checkout's own files win (an edited `data/org_country.csv` is what a run from the checkout
reads); an installed wheel reads the copies it ships under `hubshare/reference_data/`
(pyproject.toml, `force-include`), at the same path relative to the project root.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: The folder holding the `hubshare` package: the checkout's root, or site-packages.
IMPORT_ROOT = Path(__file__).resolve().parent.parent
#: Where a wheel keeps the reference files, under their paths relative to the project root.
SHIPPED = "reference_data"


def checkout_root() -> Path | None:
    """The project's checkout this code runs from, or None for an installed package."""
    return IMPORT_ROOT if (IMPORT_ROOT / "pyproject.toml").is_file() else None


def reference_file(relative: str) -> Path:
    """`relative` (e.g. `data/org_country.csv`) in the checkout when there is one and it holds
    it, else the copy shipped in the package. Returned even if neither exists: the reader's
    error then names the checkout's path."""
    root = checkout_root()
    if root is not None and (root / relative).exists():
        return root / relative
    shipped = package_path("hubshare", f"{SHIPPED}/{relative}")
    if shipped.exists() or root is None:
        return shipped
    return root / relative


def package_path(package: str, relative: str) -> Path:
    """A file or folder inside an importable package, as a path on disk (wheels are always
    installed unpacked, so an installed package's resources are plain files)."""
    found = files(package).joinpath(*relative.split("/"))
    if not isinstance(found, Path):
        raise RuntimeError(f"{package} is not installed as files on disk ({found})")
    return found
