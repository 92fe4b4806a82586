"""The local status server: the status API on ``http.server`` in a background thread, on
127.0.0.1 by default (``TaskQueue.serve_status``, ``tq-aws status serve``).

Each HTTP request becomes the payload 2.0 event a function URL would send and goes through the
same router as the Lambda (``StatusApi``), so the local page and the deployed one answer alike.
Requests are handled one at a time (the router keeps the current event on itself); the queries
run on the app's private event loop, so the server works whether it was started from plain
synchronous code or from inside a running event loop (which it never blocks).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tq_aws.status.routes import StatusApi

logger = logging.getLogger(__name__)

MAX_BODY = 1_048_576
"""The largest request body read (operator actions send a few hundred bytes)."""


def request_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
) -> dict[str, Any]:
    """The function URL (payload 2.0) event of one HTTP request."""
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        # as API Gateway does: repeated parameters joined by commas
        query[key] = f"{query[key]},{value}" if key in query else value
    lowered: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in headers:
        name = key.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        lowered[name] = f"{lowered[name]},{value}" if name in lowered else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": lowered,
        "cookies": cookies,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": client,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


class StatusServer:
    """A running local status server.

    Attributes:
        url: ``http://<host>:<port>`` (the port the OS chose when started with ``port=0``).

    Example:
        >>> server = app.serve_status(port=0, token="s3cret")
        >>> server.url
        'http://127.0.0.1:54321'
        >>> server.stop()
    """

    def __init__(self, api: StatusApi, host: str = "127.0.0.1", port: int = 0):
        self.api = api
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            server_version = "tq-aws-status"
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413, "request body too large")
                    return
                body = self.rfile.read(length) if length else b""
                event = request_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    self.client_address[0],
                )
                with lock:
                    response = api(event)
                self._write(response)

            def _write(self, response: dict[str, Any]) -> None:
                raw = response.get("body") or ""
                data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
                self.send_response(int(response.get("statusCode", 200)))
                for key, value in (response.get("headers") or {}).items():
                    self.send_header(key, str(value))
                for key, values in (response.get("multiValueHeaders") or {}).items():
                    for value in values:
                        self.send_header(key, str(value))
                for cookie in response.get("cookies") or []:
                    self.send_header("Set-Cookie", str(cookie))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s %s", self.address_string(), format % args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        address = self._httpd.server_address
        self.host = str(address[0])
        self.port = int(address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tq-aws-status", daemon=True
        )
        self._thread.start()
        logger.info("status page at %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket (safe to call twice)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(10)
        self._httpd.server_close()

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
