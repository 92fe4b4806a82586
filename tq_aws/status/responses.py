"""Building the status API's responses: JSON or HTML by the request's ``Accept``, the page or
only its fragment (``X-TQ-Fragment: 1``, what the page's refresh asks for), and the headers
every response carries (no caching, no sniffing, no framing, the pages' script policy)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie

from tq_aws.status import html

JSON = "application/json"
HTML = "text/html; charset=utf-8"
COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def header(event: Mapping[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def wants_json(event: Mapping[str, Any]) -> bool:
    """JSON when ``Accept`` asks for ``application/json`` and not for HTML (a browser's
    navigation asks for ``text/html`` first)."""
    accept = header(event, "accept").lower()
    return "application/json" in accept and "text/html" not in accept


def wants_fragment(event: Mapping[str, Any]) -> bool:
    return header(event, "x-tq-fragment") == "1"


def json_response(
    body: Any, status: int = 200, *, cookies: list[Cookie] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, ensure_ascii=False, default=str),
        headers=dict(COMMON_HEADERS),
        cookies=cookies,
    )


def html_response(
    event: Mapping[str, Any],
    name: str,
    *,
    title: str,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    """The page ``name`` (its template), or only its fragment when the page's script asks."""
    headers = dict(COMMON_HEADERS)
    if wants_fragment(event):
        body = html.fragment(name, title=title, **context)
    else:
        body, nonce = html.page(name, title=title, **context)
        headers["Content-Security-Policy"] = html.content_security_policy(nonce)
        headers["X-Frame-Options"] = "DENY"
    return Response(
        status_code=status, content_type=HTML, body=body, headers=headers, cookies=cookies
    )


def redirect(location: str, *, cookies: list[Cookie] | None = None) -> Response[str]:
    headers = {**COMMON_HEADERS, "Location": location}
    return Response(status_code=303, content_type=HTML, body="", headers=headers, cookies=cookies)


def error_response(
    event: Mapping[str, Any],
    status: int,
    message: str,
    *,
    title: str,
    login: bool = False,
    next_path: str = "/",
) -> Response[str]:
    """An error as JSON (``{"statusCode", "message"}``, as Powertools answers: to API calls and
    the page's action posts) or a page (to a browser's navigation and the login form)."""
    method = (event.get("requestContext") or {}).get("http", {}).get("method")
    form = "application/x-www-form-urlencoded" in header(event, "content-type")
    if wants_json(event) or (method == "POST" and not form):  # the page's fetches, the API
        return json_response({"statusCode": status, "message": message}, status)
    return html_response(
        event,
        "error",
        title=title,
        status=status,
        status_code=status,
        message=message,
        login=login,
        next_path=next_path,
    )
