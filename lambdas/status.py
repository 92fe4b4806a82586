"""The status-page function: ``handler(event, context)`` serves the status page and API of the
``TaskQueue`` that ``TQ_APP`` names, from function URL (payload 2.0) events.

While ``TQ_APP`` is wrong every invocation raises ``ConfigurationError`` naming ``TQ_APP``.
"""

from __future__ import annotations

import functools
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
def status_handler() -> Handler:
    """The app's status handler (``TaskQueue.status_handler()``), built once."""
    app: Any = load_app()
    built: Handler = app.status_handler()
    return built


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``status.handler``)."""
    return status_handler()(event, context)
