"""Prefect pull steps for `deployments/prefect.yaml`.

A process worker starts each flow run in a temporary directory, where a relative
`set_working_directory: .` points nowhere (every run crashed with FileNotFoundError). This step
moves the run into the checkout that the worker's Python imports hubshare from, wherever that
is, so the entrypoints, `data/`, `.env` and the default `./var` resolve as they do for the CLI.
"""

from __future__ import annotations

import os

from hubshare.settings import PROJECT_ROOT


def set_working_directory_to_project() -> dict[str, str]:
    os.chdir(PROJECT_ROOT)
    return {"directory": str(PROJECT_ROOT)}
