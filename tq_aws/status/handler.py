"""The status page's Lambda entry point: ``TaskQueue.status_handler()`` gives a plain
synchronous ``handler(event, context)`` for function URL (or HTTP API payload 2.0) events,
which ``lambdas/status.py`` calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tq_aws.engine.engine import Engine
from tq_aws.status.routes import StatusApi

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def status_handler(engine: Engine, *, token: str | None = None) -> Handler:
    """The handler of the status API over ``engine``'s stores.

    With the function URL's ``AWS_IAM`` auth (the templates' default), AWS checks every
    caller's signature and the handler trusts ``requestContext.authorizer.iam``: reads and
    operator actions are open to those the URL's policy allows. With ``token`` every request
    needs ``Authorization: Bearer <token>`` as well.
    """
    api = StatusApi(engine, token=token)

    def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return api(event, context)

    return handler
