"""The status API's routes on a Powertools ``LambdaFunctionUrlResolver``: one router for the
Lambda function URL (payload 2.0 events) and the local server (which builds the same events).

- ``GET /``: recent failures and flows (``status``, ``task_type``, ``kind``, ``since``,
  ``until``, ``limit``, ``cursor``);
- ``GET /entities/{type}/{id}``: the entity's tasks and flows;
- ``GET /flows/{id}``: the flow's status (the page: its steps too, ``?failed=1`` the failed);
- ``GET /flows/{id}/steps``: the flow's steps as JSON (``?failed=1``);
- ``GET /tasks/{id}``: the stored task;
- ``GET /poison``: the poison records with their source positions;
- ``POST /tasks/{id}/retry``, ``/tasks/{id}/cancel``, ``/tasks/retry-failed``,
  ``/poison/redrive``: operator actions (``tq_aws.status.actions``);
- ``GET``/``POST /login``: the token form, for a browser.

Path segments are percent-decoded, so ids holding ``/`` or ``#`` work when the caller encodes
them. Each route authenticates first (``tq_aws.status.auth``), then runs its query on the app's
private event loop (``Engine.run_sync``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from tq_aws.core.flows import FLOW_META
from tq_aws.core.projections import PROJECTION_STATUSES
from tq_aws.core.task import Entity
from tq_aws.engine.engine import Engine
from tq_aws.engine.operator import OPERATOR_RETRY
from tq_aws.errors import InvalidQueryError
from tq_aws.status import actions
from tq_aws.status.auth import COOKIE, Authenticator
from tq_aws.status.params import overview_params
from tq_aws.status.queries import StatusQueries
from tq_aws.status.responses import error_response, html_response, json_response, redirect
from tq_aws.status.responses import wants_json as _wants_json
from tq_aws.status.serialize import (
    entity_json,
    flow_json,
    overview_json,
    poison_json,
    steps_json,
    task_json,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_STEPS_SHOWN = 1000
"""A flow page lists at most this many steps (the steps JSON has them all)."""
POISON_SHOWN = 100


class StatusApi:
    """The status pages and API of one app: ``api(event, context)`` answers a payload 2.0
    event (function URL or HTTP API) with a response dict.

    Args:
        engine: the app (a ``TaskQueue``).
        token: require ``Authorization: Bearer <token>``; ``None``: reads are open, actions
            need IAM.
        run: runs a coroutine to its result from this (synchronous) code; default the app's
            private loop (``Engine.run_sync``).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        token: str | None = None,
        run: Callable[[Awaitable[Any]], Any] | None = None,
    ):
        self.engine = engine
        self.queries = StatusQueries(engine)
        self.auth = Authenticator(token)
        self._run = run or engine.run_sync
        self.resolver = LambdaFunctionUrlResolver()
        self._register()

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        return self.resolver.resolve(dict(event), context)

    def run(self, awaitable: Awaitable[T]) -> T:
        result: T = self._run(awaitable)
        return result

    @property
    def event(self) -> dict[str, Any]:
        return self.resolver.current_event.raw_event

    def query(self) -> dict[str, str]:
        return dict(self.resolver.current_event.query_string_parameters or {})

    def _register(self) -> None:
        app = self.resolver

        @app.get("/")
        def overview() -> Response[str]:
            self.auth.reader(self.event)
            params = overview_params(self.query())
            view = self.run(
                self.queries.overview(params.where, limit=params.limit, cursor=params.cursor)
            )
            if _wants_json(self.event):
                return json_response(overview_json(view))
            return html_response(
                self.event,
                "overview",
                title="Overview",
                rows=view.rows,
                flows=view.flows,
                cursor=view.cursor,
                filters=params.template_filters(),
                statuses=PROJECTION_STATUSES,
            )

        @app.get("/entities/<entity_type>/<entity_id>")
        def entity(entity_type: str, entity_id: str) -> Response[str]:
            self.auth.reader(self.event)
            try:
                subject = Entity(type=unquote(entity_type), id=unquote(entity_id))
            except ValueError:
                raise NotFoundError("no such entity") from None
            view = self.run(self.queries.entity(subject))
            if view is None:
                raise NotFoundError(f"no task or flow of {subject.type}/{subject.id} is known")
            if _wants_json(self.event):
                return json_response(entity_json(view))
            return html_response(
                self.event,
                "entity",
                title=f"{subject.type}/{subject.id}",
                entity=subject,
                tasks=view.tasks,
                flows=view.flows,
                progress_of=view.progress,
            )

        @app.get("/flows/<flow_id>")
        def flow(flow_id: str) -> Response[str]:
            self.auth.reader(self.event)
            flow_id = unquote(flow_id)
            if _wants_json(self.event):
                status = self.run(self.queries.flow_status(flow_id))
                if status is None:
                    raise NotFoundError(f"no flow {flow_id} is known")
                return json_response(flow_json(status))
            view = self.run(self.queries.flow(flow_id, failed_only=self._failed_only()))
            if view is None:
                raise NotFoundError(f"no flow {flow_id} is known")
            shown = view.steps[:MAX_STEPS_SHOWN]
            return html_response(
                self.event,
                "flow",
                title=f"flow {flow_id}",
                view=view,
                steps=shown,
                hidden=len(view.steps) - len(shown),
            )

        @app.get("/flows/<flow_id>/steps")
        def steps(flow_id: str) -> Response[str]:
            self.auth.reader(self.event)
            flow_id = unquote(flow_id)
            view = self.run(self.queries.flow(flow_id, failed_only=self._failed_only()))
            if view is None:
                raise NotFoundError(f"no flow {flow_id} is known")
            return json_response(steps_json(view))

        @app.get("/tasks/<task_id>")
        def task(task_id: str) -> Response[str]:
            self.auth.reader(self.event)
            task_id = unquote(task_id)
            found = self.run(self.queries.task(task_id))
            if found is None:
                raise NotFoundError(
                    f"no stored task {task_id} (a task is stored when it is scheduled for "
                    "later, force_store, failed, or part of a flow's join)"
                )
            if _wants_json(self.event):
                return json_response(task_json(found))
            meta = found.metadata.get(FLOW_META)
            retried = found.metadata.get(OPERATOR_RETRY)
            return html_response(
                self.event,
                "task",
                title=f"task {task_id}",
                task=found,
                flow=_flow_link(meta),
                retried=retried if isinstance(retried, dict) else None,
            )

        @app.get("/poison")
        def poison() -> Response[str]:
            self.auth.reader(self.event)
            views = self.run(self.queries.poison(POISON_SHOWN))
            if _wants_json(self.event):
                return json_response(poison_json(views))
            return html_response(self.event, "poison", title="Poison records", views=views)

        @app.get("/login")
        def login_form() -> Response[str]:
            return error_response(
                self.event,
                401,
                "sign in with the status page's token",
                title="Sign in",
                login=True,
                next_path=self.query().get("next", "/"),
            )

        @app.post("/login")
        def login() -> Response[str]:
            form = parse_qs(self.resolver.current_event.decoded_body or "")
            token = (form.get("token") or [""])[0]
            next_path = _local_path((form.get("next") or ["/"])[0])
            if not self.auth.valid_token(token):
                return error_response(
                    self.event,
                    401,
                    "that token is not this page's",
                    title="Sign in",
                    login=True,
                    next_path=next_path,
                )
            cookie = Cookie(
                COOKIE,
                token,
                path="/",
                http_only=True,
                same_site=SameSite.STRICT_MODE,
                secure=_https(self.event),
            )
            return redirect(next_path, cookies=[cookie])

        actions.register(self)

        @app.not_found
        def not_found(exc: NotFoundError) -> Response[str]:
            # the routes' own NotFoundError names what is missing; an unknown path has none
            message = str(exc.msg) if exc.msg != "Not found" else "no such page"
            return error_response(self.event, 404, message, title="Not found")

        def refused(exc: ServiceError) -> Response[str]:
            login = exc.status_code == 401 and self.auth.token_required
            path = self.resolver.current_event.path
            return error_response(
                self.event,
                exc.status_code,
                str(exc.msg),
                title=_TITLES.get(exc.status_code, "Error"),
                login=login,
                next_path=path,
            )

        def bad_query(exc: InvalidQueryError) -> Response[str]:
            return error_response(self.event, 400, str(exc), title="Bad request")

        def failed(exc: Exception) -> Response[str]:
            logger.exception("status request %s failed", self.resolver.current_event.path)
            return error_response(
                self.event,
                500,
                f"the status query failed: {type(exc).__name__}: {exc}",
                title="Error",
            )

        # registered by call: the decorator form is untyped
        app.exception_handler(ServiceError)(refused)
        app.exception_handler(InvalidQueryError)(bad_query)
        app.exception_handler(Exception)(failed)

    def _failed_only(self) -> bool:
        return self.query().get("failed", "") in ("1", "true", "yes")


_TITLES = {400: "Bad request", 401: "Sign in", 403: "Refused", 404: "Not found", 409: "Conflict"}


def _flow_link(meta: Any) -> dict[str, Any] | None:
    if not isinstance(meta, dict) or "flow_id" not in meta:
        return None
    return {
        "flow_id": str(meta["flow_id"]),
        "step_index": meta.get("step_index"),
        "is_join": bool(meta.get("is_join")),
    }


def _local_path(path: str) -> str:
    """Only a path of this site to go on to after signing in (never another site)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _https(event: Mapping[str, Any]) -> bool:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == "x-forwarded-proto":
            return str(value).lower() == "https"
    return False
