"""The status page and API: recent failures and flows, an entity's tasks and flows, a flow's
counters and steps, a stored task, the poison records; JSON by ``Accept``, else HTML rendered
on the server that refreshes itself; operator actions (retry, cancel, redrive) for the
authenticated.

An entry point beside ``tq_aws.app`` (it reads the app's stores through the engine):
``TaskQueue.serve_status`` starts the local server, ``TaskQueue.status_handler`` gives the
Lambda function URL handler.

Modules: ``queries`` (what the pages show, read from the stores), ``serialize`` (JSON),
``html`` and ``templates/`` (the pages), ``params`` (query parameters and bodies), ``auth``
(who may read and act), ``routes`` (the router), ``actions`` (the operator actions' routes),
``responses`` (content negotiation and headers), ``positions`` (poison source positions),
``server`` (the local server), ``handler`` (the Lambda handler).

Example:
    >>> server = app.serve_status(port=0)
    >>> urllib.request.urlopen(server.url + "/entities/user/u-1").read()
    >>> server.stop()
"""

from __future__ import annotations

from tq_aws.engine.engine import Engine
from tq_aws.status.handler import Handler, status_handler
from tq_aws.status.routes import StatusApi
from tq_aws.status.server import StatusServer


def serve_status(
    engine: Engine, host: str = "127.0.0.1", port: int = 0, token: str | None = None
) -> StatusServer:
    """Serve ``engine``'s status page and API on ``host:port`` in a background thread."""
    return StatusServer(StatusApi(engine, token=token), host, port)


__all__ = ["Handler", "StatusApi", "StatusServer", "serve_status", "status_handler"]
