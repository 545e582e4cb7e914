"""`hubshare serve`: both deployments of `deployments/prefect.yaml` in this one process, for a
single machine without a work pool (Prefect's `serve`). The YAML stays the one definition of
names, schedules, concurrency limits and tags."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.schedules import CronSchedule

from hubshare.errors import HubshareError
from hubshare.resources import reference_file

DEPLOYMENTS_FILE = reference_file("deployments/prefect.yaml")


def _flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    return getattr(
        importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", ".")), name
    )


def served_deployments(file: Path = DEPLOYMENTS_FILE) -> list[Any]:
    """The runner deployments that `prefect deploy` would create from `file`."""
    try:
        spec = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HubshareError(f"{file}: cannot read the deployments ({err})") from None
    found = []
    for item in spec["deployments"]:
        schedules = [
            CronSchedule(cron=s["cron"], timezone=s.get("timezone", "UTC"))
            for s in item.get("schedules", [])
        ]
        found.append(
            _flow(item["entrypoint"]).to_deployment(
                name=item["name"],
                description=item.get("description"),
                tags=item.get("tags"),
                schedules=schedules or None,
                concurrency_limit=item.get("concurrency_limit"),
                parameters=item.get("parameters") or {},
            )
        )
    return found


def serve_deployments() -> None:
    serve(*served_deployments())
