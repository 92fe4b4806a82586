"""``MotoServer``: moto's server on loopback, in a thread of this process, for tests and
benchmarks (test-only: moto is a development dependency, imported only when a server starts).

It listens on 127.0.0.1 at a free port and nowhere else. moto's own server handles requests
concurrently, which is not always what AWS guarantees, so requests can be serialized:

- ``serialize="none"``: moto's ``ThreadedMotoServer`` as it is;
- ``serialize="all"``: one request at a time, for tests of conditional-write races (moto does
  not make a conditional write atomic; handling one request at a time does);
- ``serialize="kinesis_puts"``: Kinesis ``PutRecord(s)`` one at a time, everything else
  concurrent. moto numbers a shard's records ``max + 1`` without a lock, so two ``PutRecords``
  calls handled at once (the Kinesis transport sends up to 8 at a time, as AWS allows) can give
  two records one sequence number, and one of them is lost.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

logger = logging.getLogger(__name__)

Serialize = Literal["none", "all", "kinesis_puts"]
HOST = "127.0.0.1"
KINESIS_PUT_TARGET = "Kinesis_20131202.PutRecord"
"""The ``X-Amz-Target`` prefix of ``PutRecord`` and ``PutRecords``."""

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def serialized(app: WsgiApp, serialize: Serialize) -> WsgiApp:
    """``app`` handling the requests ``serialize`` names one at a time."""
    if serialize == "none":
        return app
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if serialize == "all" or environ.get("HTTP_X_AMZ_TARGET", "").startswith(
            KINESIS_PUT_TARGET
        ):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return one_at_a_time


class MotoServer:
    """moto's server on 127.0.0.1 at a free port; ``start`` returns its endpoint.

    Example:
        >>> with MotoServer(serialize="kinesis_puts") as moto:
        ...     app = TaskQueue.aws(..., endpoint_url=moto.endpoint)
    """

    def __init__(self, *, serialize: Serialize = "none"):
        self.serialize: Serialize = serialize
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (once started)."""
        if self._server is None:
            raise RuntimeError("the moto server is not started")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Start serving in a daemon thread; return the endpoint."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from moto.server import ThreadedMotoServer
        from werkzeug.serving import make_server

        serialize = self.serialize

        class Server(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = serialized(DomainDispatcherApplication(create_backend_app), serialize)
                self._server = make_server(
                    self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        logging.getLogger("werkzeug").disabled = True
        server = Server(ip_address=HOST, port=0, verbose=False)  # 0: a free port
        server.start()
        self._server = server
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every resource (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
