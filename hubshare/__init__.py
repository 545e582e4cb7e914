"""hubshare: the daily share of Hugging Face Hub downloads by developer country."""

import os

# The stack phones home by default (Prefect analytics, Hub telemetry, GX analytics); a pipeline
# that must run offline turns that off before any of them is imported. Users can still override.
for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # Our modules' logs and huggingface_hub's retry / rate-limit waits reach the run's logs in
    # the Prefect UI, not only the worker's terminal.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows,hubshare,huggingface_hub",
    # ... and the same modules used outside a flow (imports, `mapping check`) stay quiet.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}.items():
    os.environ.setdefault(_name, _value)
