"""Delivering events to providers: the two modes, and providers that fail.

Default mode (``"async"``): a provider's method is called where the event happens; if it returns
an awaitable (an ``async def`` method), that runs in the background and is never waited for, so
a slow provider never holds up a batch. ``"sync"`` mode: the engine awaits the method before it
goes on (an outcome's event is handled before the batch is acknowledged, for instance).

A provider that raises, or whose awaitable fails, never disturbs processing: the first failure
of each of its methods is logged with the provider's name and the traceback, and every failure
is counted in ``failures``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

from tq_aws.core.lifecycle.base import LifecycleEvent
from tq_aws.core.lifecycle.routing import Route, routes_of
from tq_aws.errors import ConfigurationError

logger = logging.getLogger(__name__)

LifecycleMode = Literal["async", "sync"]
DRAIN_TIMEOUT = 10.0
"""Seconds ``drain`` waits at most for default-mode providers (at idle, at a worker's stop)."""
MODES = ("async", "sync")


class EventDispatch:
    """The registered providers, and the routes each event takes to them."""

    def __init__(self) -> None:
        self.listeners: list[object] = []
        """The providers added, in order (built-in ones included)."""
        self._modes: dict[int, tuple[bool, bool]] = {}
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self.failures: Counter[tuple[str, str]] = Counter()
        """Failures of providers by ``(provider name, method)``."""
        self.drain_timeout = DRAIN_TIMEOUT
        """Seconds ``drain`` waits at most for default-mode providers."""

    def __bool__(self) -> bool:
        """Whether a provider other than the built-in ones is registered."""
        return any(not builtin for _, builtin in self._modes.values())

    def add(
        self, provider: object, *, mode: LifecycleMode = "async", builtin: bool = False
    ) -> None:
        """Register ``provider``: any object with some ``on_<event>`` methods (sync or
        ``async def``). ``mode="sync"`` awaits its methods before the engine goes on."""
        if mode not in MODES:
            raise ConfigurationError(f"mode={mode!r}; give 'async' (the default) or 'sync'")
        if any(p is provider for p in self.listeners):
            return
        self.listeners.append(provider)
        self._modes[id(provider)] = (mode == "sync", builtin)
        self._rebuild()

    def remove(self, provider: object) -> None:
        """Stop sending events to ``provider``."""
        self.listeners = [p for p in self.listeners if p is not provider]
        self._modes.pop(id(provider), None)
        self._rebuild()

    def _rebuild(self) -> None:
        routes: dict[str, list[Route]] = {}
        for provider in self.listeners:
            sync, builtin = self._modes[id(provider)]
            for name, found in routes_of(provider, sync=sync, builtin=builtin).items():
                routes.setdefault(name, []).extend(found)
        self._routes = {name: tuple(r) for name, r in routes.items()}
        self._changed()

    def _changed(self) -> None:
        """Called once the routes changed (the bus caches what depends on them)."""

    def wants(self, name: str) -> bool:
        """Whether some provider receives the event ``name``."""
        return name in self._routes

    def wanted_by_users(self, name: str) -> bool:
        """Whether a provider other than the built-in ones receives the event ``name``."""
        return any(not r.builtin for r in self._routes.get(name, ()))

    @property
    def pending(self) -> int:
        """Awaitables of default-mode providers still running."""
        return len(self._background)

    # -- delivering -----------------------------------------------------------------------------

    def emit(self, event: LifecycleEvent) -> Awaitable[None] | None:
        """Deliver ``event``; return what must be awaited for the sync-mode providers (or
        ``None`` when nothing must). Never raises for a provider's error."""
        routes = self._routes.get(event.name)
        if not routes:
            return None
        for i, route in enumerate(routes):
            out = self._call(route, event)
            if out is not None:
                if route.sync:
                    return self._finish(route, out, routes[i + 1 :], event)
                self._spawn(route, out)
        return None

    async def send(self, event: LifecycleEvent) -> None:
        """Deliver ``event`` and await the sync-mode providers' methods."""
        waiting = self.emit(event)
        if waiting is not None:
            await waiting

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until the default-mode providers' awaitables have ended, at most ``timeout``
        seconds (default ``drain_timeout``); return whether they all did. What still runs then
        is counted in a warning and left running, never waited for longer."""
        if timeout is None:
            timeout = self.drain_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._background:
            left = deadline - loop.time()
            if left <= 0:
                logger.warning(
                    "%d lifecycle listener call(s) still running after %.1f s, not waited for",
                    len(self._background),
                    timeout,
                )
                return False
            await asyncio.wait(list(self._background), timeout=left)
        return True

    def _call(self, route: Route, event: LifecycleEvent) -> Awaitable[Any] | None:
        try:
            out = route.call(event)
        except Exception as exc:
            self._failed(route, exc)
            return None
        if out is not None and inspect.isawaitable(out):
            return out
        return None

    async def _finish(
        self, first: Route, out: Awaitable[Any], rest: Sequence[Route], event: LifecycleEvent
    ) -> None:
        await self._guarded(first, out)
        for route in rest:
            more = self._call(route, event)
            if more is None:
                continue
            if route.sync:
                await self._guarded(route, more)
            else:
                self._spawn(route, more)

    def _spawn(self, route: Route, out: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(self._guarded(route, out))
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    async def _guarded(self, route: Route, out: Awaitable[Any]) -> None:
        try:
            await out
        except Exception as exc:
            self._failed(route, exc)

    def _failed(self, route: Route, exc: Exception) -> None:
        key = (route.label, route.method)
        self.failures[key] += 1
        if self.failures[key] == 1:
            logger.error(
                "lifecycle listener %s failed in %s; processing goes on (later failures of this "
                "method are counted in app.events.failures, not logged)",
                route.label,
                route.method,
                exc_info=exc,
            )
        else:
            logger.debug("lifecycle listener %s failed in %s again", route.label, route.method)
