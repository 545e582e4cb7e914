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

from hubshare.errors import HubshareError, UsageError
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


def pool_deployments_in_the_way(deployments: list[Any]) -> list[tuple[str, str]]:
    """(flow/deployment name, work pool) of each deployment `serve` would register whose name
    the Prefect server already holds bound to a work pool (made by `prefect deploy`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = deployment.full_name
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                found.append((name, existing.work_pool_name))
    return found


def pause_served_deployments(deployments: list[Any]) -> None:
    """Pause the schedules of the deployments this process served, leaving any that a work pool
    now holds (a `prefect deploy` while serving took the name over) as they are."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for deployment in deployments:
            try:
                existing = client.read_deployment_by_name(deployment.full_name)
            except ObjectNotFound:
                continue
            if not existing.work_pool_name:
                client.pause_deployment(existing.id)


def serve_deployments() -> None:
    """Serve both deployments until stopped, unless the server has them on a work pool.

    A served deployment has no pull step and no work pool: registered under a pool deployment's
    name it replaces it (its runs crash where the worker cannot find the flow, and Prefect's
    `serve` pauses it on the way out, silently stopping the team's schedule). So `serve`
    refuses instead of choosing other names, which would run every scheduled date twice."""
    deployments = served_deployments()
    taken = pool_deployments_in_the_way(deployments)
    if taken:
        names = ", ".join(f"{name} (work pool '{pool}')" for name, pool in taken)
        pools = sorted({pool for _, pool in taken})
        raise UsageError(
            f"this Prefect server already runs {names} from `prefect deploy`; `hubshare serve` "
            f"would replace them and stop their schedule: run a worker instead (`prefect worker "
            f"start --pool {pools[0]}`), or serve against another Prefect server (PREFECT_API_URL)"
        )
    try:
        # Prefect would pause every deployment of the same name, even one a pool took over.
        serve(*deployments, pause_on_shutdown=False)
    finally:
        pause_served_deployments(deployments)
