"""Alert: announce a run that did not publish to a webhook (`HUBSHARE_ALERT_WEBHOOK_URL`)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0


def post_alert(url: str, payload: dict[str, Any]) -> bool:
    """POST the JSON summary; a webhook that is down is logged, never raised (the run's own
    outcome is what matters). The URL is not logged: webhook URLs often carry a secret."""
    try:
        response = httpx.post(url, json=payload, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPError as err:
        log.warning(
            "Alert webhook did not accept the %s alert: %s", payload["status"], type(err).__name__
        )
        return False
    return True
