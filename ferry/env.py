"""Offline switches: every tool Ferry drives otherwise tries the network at some point.

Applied by the CLI before anything heavy is imported (never at import time of the library),
with ``setdefault`` so that a user's explicit environment wins.
"""

from __future__ import annotations

import os

OFFLINE = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    # Quiet at the source: bars that print to files and CI logs as pages of carriage returns.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def apply_offline_defaults() -> None:
    """Set the offline switches unless the user set them already."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
