"""Who may read the status pages and who may act.

- With a token (``serve_status(token=...)``, ``status_handler(token=...)``) every request needs
  ``Authorization: Bearer <token>`` (or the cookie the ``/login`` form sets from it), else 401.
- On a function URL with ``AWS_IAM`` auth, AWS has checked the caller's signature before the
  function runs and passes who it is in ``requestContext.authorizer.iam``: trusted as such.
- Operator actions (POST) need one of the two; with neither configured they are refused (403),
  so a status page left open on a network can be read but never change anything. A POST
  authenticated by the cookie must also carry ``X-TQ-Action: 1`` (the page's script sends it;
  a form on another site cannot), so a signed-in browser cannot be made to act by another
  site; a bearer token or an IAM signature is never sent by a browser on its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler.exceptions import ForbiddenError, UnauthorizedError

from tq_aws.errors import ConfigurationError

COOKIE = "tq_status_token"
ACTION_HEADER = "x-tq-action"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: ``how`` is ``token``, ``cookie`` (the token, from the login form),
    ``iam`` or ``anonymous``; ``name`` is logged with each action."""

    how: str
    name: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _cookies(event: Mapping[str, Any]) -> dict[str, str]:
    raw: list[str] = list(event.get("cookies") or [])
    header = _header(event.get("headers") or {}, "cookie")
    if header:
        raw.extend(header.split(";"))
    out: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.strip().partition("=")
        if sep:
            out[name.strip()] = value.strip()
    return out


def _iam(event: Mapping[str, Any]) -> dict[str, Any] | None:
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    iam = authorizer.get("iam") if isinstance(authorizer, Mapping) else None
    return dict(iam) if isinstance(iam, Mapping) else None


def _source_ip(event: Mapping[str, Any]) -> str:
    http = (event.get("requestContext") or {}).get("http") or {}
    return str(http.get("sourceIp") or "unknown")


class Authenticator:
    """Decides for one request (a payload 2.0 event) who asks and whether they may.

    Args:
        token: the shared secret, or ``None`` (reads open; actions only with IAM).
    """

    def __init__(self, token: str | None = None):
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ConfigurationError("token=''; give a non-empty token, or None for no token")
        self._token = token

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def valid_token(self, candidate: str | None) -> bool:
        return (
            self._token is not None
            and candidate is not None
            and hmac.compare_digest(candidate.encode(), self._token.encode())
        )

    def who(self, event: Mapping[str, Any]) -> Principal | None:
        """The caller, or ``None`` when a token is required and none valid was given."""
        iam = _iam(event)
        if iam is not None:
            name = iam.get("userArn") or iam.get("callerId") or iam.get("accessKey") or "iam"
            return Principal("iam", str(name))
        bearer = _header(event.get("headers") or {}, "authorization") or ""
        scheme, _, credential = bearer.partition(" ")
        given = credential.strip() if scheme.lower() == "bearer" else None
        if self.valid_token(given):
            return Principal("token", f"token holder at {_source_ip(event)}")
        if given is None and self.valid_token(_cookies(event).get(COOKIE)):
            return Principal("cookie", f"signed-in browser at {_source_ip(event)}")
        if self._token is not None:
            return None
        return Principal("anonymous", f"anonymous at {_source_ip(event)}")

    def reader(self, event: Mapping[str, Any]) -> Principal:
        """The caller of a read. Raises ``UnauthorizedError`` (401) without the token."""
        who = self.who(event)
        if who is None:
            raise UnauthorizedError("this status page needs Authorization: Bearer <token>")
        return who

    def actor(self, event: Mapping[str, Any]) -> Principal:
        """The caller of an action. Raises ``UnauthorizedError`` (401) without the token,
        ``ForbiddenError`` (403) when no authentication is configured, or the cookie came
        without the action header."""
        who = self.reader(event)
        if who.how == "anonymous":
            raise ForbiddenError(
                "operator actions need authentication: start the status server with a token, "
                "or serve the function URL with AWS_IAM auth"
            )
        if who.how == "cookie" and _header(event.get("headers") or {}, ACTION_HEADER) != "1":
            raise ForbiddenError("an operator action must carry the header X-TQ-Action: 1")
        return who
