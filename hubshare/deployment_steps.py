"""Prefect pull steps for `deployments/prefect.yaml`.

A process worker starts each flow run in a temporary directory, where a relative
`set_working_directory: .` points nowhere (every run crashed with FileNotFoundError). This step
moves the run into the folder that the worker's Python imports hubshare from (the checkout, or
site-packages for an installed wheel), wherever that is, so the entrypoints (`flows/daily.py`),
`data/`, `.env` and the default `./var` resolve as they do for the CLI.
"""

from __future__ import annotations

import os

from hubshare.resources import IMPORT_ROOT


def set_working_directory_to_project() -> dict[str, str]:
    os.chdir(IMPORT_ROOT)
    return {"directory": str(IMPORT_ROOT)}
