"""SIGINT and SIGTERM for long-running commands: the first asks to stop (the worker finishes the
batch in hand, the ECS worker drains), a second one exits at once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While entered, SIGINT/SIGTERM call ``request_stop`` on ``loop`` once; the next signal
    ends the process with ``128 + signum`` (130 for Ctrl-C) without waiting for anything.

    Python-level handlers (not ``loop.add_signal_handler``) so that the second signal works
    even while an executor blocks the event loop.

    Args:
        request_stop: called on the loop's thread after the first signal.
        what: what the first signal does, for the line printed on stderr.
        loop: the loop to call it on (default: the running loop; with none running,
            ``request_stop`` is called in the handler, so it must be safe there, as
            ``threading.Event.set`` is).
    """

    def __init__(
        self,
        request_stop: Callable[[], None],
        what: str,
        loop: asyncio.AbstractEventLoop | None = None,
    ):
        self.request_stop = request_stop
        self.what = what
        self.loop = loop
        self.received = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if self.loop is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                self.loop = None
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        # os.write: a signal may arrive while print() holds stderr's buffer
        if self.received == 1:
            os.write(2, f"tq-aws: {name}: {self.what}; send it again to stop at once\n".encode())
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self.request_stop)
            else:
                self.request_stop()
            return
        os.write(2, f"tq-aws: {name} again: stopping at once\n".encode())
        os._exit(128 + signum)


__all__ = ["SIGNALS", "StopSignals"]
