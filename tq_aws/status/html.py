"""The status pages' HTML, rendered on the server with Jinja2 (``autoescape`` on: every task id,
status, error, payload and result is escaped where it is written).

A page is its fragment (what ``<main>`` holds) inside the layout; the layout's small script
fetches the fragment of the same address again every few seconds and swaps it in, so a page
follows its flows and tasks without a reload, and it posts the operator actions' buttons. The
script carries a per-response nonce and the pages are served with a Content-Security-Policy
that runs no other script.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup

from tq_aws.core.flows import FlowStatus
from tq_aws.status.serialize import iso

REFRESH_MS = 2000
"""How often an open page fetches its fragment again."""
SUMMARY_CHARS = 160
"""A result or payload summary in a list is cut to this many characters."""

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("tq_aws.status", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _json_text(value: Any, indent: int | None = 2) -> str:
    """JSON text of a value, as plain text (escaped when written, unlike ``tojson``)."""
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _summary(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else _json_text(value, indent=None)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _when(value: datetime | None) -> str:
    return iso(value) or ""


def _seg(value: str) -> str:
    """One path segment, percent-encoded ('/' included) for a link."""
    return quote(value, safe="")


def _percent(part: int, total: int) -> float:
    return 0.0 if total <= 0 else round(100.0 * part / total, 2)


def _progress(status: FlowStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "state": status.state,
        "total": status.total,
        "succeeded": status.succeeded,
        "failed": status.failed,
        "pending": status.pending,
        "ok_pct": _percent(status.succeeded, status.total),
        "failed_pct": _percent(status.failed, status.total),
        "done": status.succeeded + status.failed,
    }


def _query(base: dict[str, Any], **changes: Any) -> str:
    """A query string from ``base`` with ``changes``; ``None`` values left out."""
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def _body(value: Any) -> str:
    """A button's ``data-body``: compact JSON (escaped as an attribute when written)."""
    return json.dumps(value, separators=(",", ":"))


_env.filters.update(json_text=_json_text, summary=_summary, when=_when, seg=_seg, body=_body)
_env.globals.update(progress=_progress, query=_query)


def fragment(name: str, **context: Any) -> str:
    """The HTML of one page's ``<main>`` (``name``: ``overview``, ``entity``, ``flow``,
    ``task``, ``poison``, ``error``, ``login``)."""
    return _env.get_template(f"{name}.html").render(**context)


def page(name: str, *, title: str, nonce: str | None = None, **context: Any) -> tuple[str, str]:
    """The whole page and the nonce its script runs with (for the Content-Security-Policy)."""
    nonce = nonce or secrets.token_urlsafe(16)
    body = Markup(fragment(name, title=title, **context))  # escaped by its own template
    html = _env.get_template("layout.html").render(
        title=title, content=body, nonce=nonce, refresh_ms=REFRESH_MS, view=name
    )
    return html, nonce


def content_security_policy(nonce: str) -> str:
    """Only the page's own script runs; nothing is framed or posted elsewhere."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )
