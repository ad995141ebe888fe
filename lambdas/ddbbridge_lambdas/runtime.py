"""Shared client settings of both handlers (built lazily: no network at import time)."""

from __future__ import annotations

import logging
import os

from botocore.config import Config

logging.getLogger().setLevel(os.environ.get("DDBBRIDGE_LOG_LEVEL", "INFO"))


def aws_config() -> Config:
    # Standard retries back off on throttling; the handlers add their own bounded retries on top
    # and hand anything still failing back to Lambda with batchItemFailures.
    return Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)
