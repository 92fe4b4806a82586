"""The worker function: ``handler(event, context)`` runs a Kinesis or SQS event through the
``TaskQueue`` that ``TQ_APP`` names and returns ``{"batchItemFailures": [...]}``.

The app and its handler are built on the first invocation and kept for the next ones. While
``TQ_APP`` is wrong every invocation raises ``ConfigurationError`` (naming ``TQ_APP``), so Lambda
retries the whole batch instead of taking an empty failure list as success.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

if __package__:
    from .app_loader import load_app
else:  # at the root of the function's bundle
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app_loader import load_app

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@functools.cache
def lambda_handler() -> Handler:
    """The app's Lambda handler, with Powertools Logger and Metrics (EMF) on, and Tracer when
    ``aws-xray-sdk`` is installed; settings come from the ``POWERTOOLS_*`` variables."""
    app = load_app()
    tracing = importlib.util.find_spec("aws_xray_sdk") is not None
    return app.lambda_handler(logger=True, metrics=True, tracer=tracing or None)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``worker.handler``)."""
    return lambda_handler()(event, context)
