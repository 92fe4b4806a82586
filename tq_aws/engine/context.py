"""What the engine's parts share: the ports, the executor registry, the lifecycle bus, the
counters and the settings. Built once by ``Engine`` and handed to each part, so no part is
wired by hand with a dozen arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tq_aws.core.blocking import DEFAULT_SLOW_CALLBACK_DURATION
from tq_aws.core.claim_check import DEFAULT_RESULT_LIMIT
from tq_aws.core.executors import ExecutorRegistry
from tq_aws.core.lifecycle import LifecycleBus
from tq_aws.engine.stats import Stats
from tq_aws.errors import ConfigurationError
from tq_aws.ports import Ports

DEFAULT_MAX_DELIVERIES = 10
"""Deliveries after which a record that could not be recorded is parked (``max_deliveries``)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The engine's options (see ``TaskQueue`` for each)."""

    batch_size: int = 100
    result_limit: int = DEFAULT_RESULT_LIMIT
    processing_grace: float = 0.0
    include_payload: bool = False
    slow_callback_duration: float | None = DEFAULT_SLOW_CALLBACK_DURATION
    max_deliveries: int | None = DEFAULT_MAX_DELIVERIES

    def __post_init__(self) -> None:
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"batch_size={size!r}; give a whole number >= 1")
        slow = self.slow_callback_duration
        if slow is not None and (
            isinstance(slow, bool) or not isinstance(slow, int | float) or not slow > 0
        ):
            raise ConfigurationError(
                f"slow_callback_duration={slow!r}; give seconds > 0, or None not to time "
                "async executors"
            )
        bound = self.max_deliveries
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or bound < 1
        ):
            raise ConfigurationError(
                f"max_deliveries={bound!r}; give a whole number >= 1 (or None: never park)"
            )


UNSET: Final[Any] = object()
"""``max_deliveries_from_env``: the variable is not set."""


def max_deliveries_from_env(env: Mapping[str, str]) -> Any:
    """``max_deliveries`` from ``TQ_MAX_DELIVERIES``: a whole number >= 1, ``none`` (never
    park), or ``UNSET`` when the variable is not set.

    Raises:
        ConfigurationError: any other value.
    """
    raw = (env.get("TQ_MAX_DELIVERIES") or "").strip()
    if not raw:
        return UNSET
    if raw.lower() in ("none", "off", "never"):
        return None
    try:
        bound = int(raw)
    except ValueError:
        bound = 0
    if bound < 1:
        raise ConfigurationError(
            f"TQ_MAX_DELIVERIES={raw!r}; give a whole number >= 1 (deliveries before a record "
            "that cannot be recorded is parked in the poison store), or 'none' never to park"
        )
    return bound


@dataclass(frozen=True, slots=True)
class EngineContext:
    """One app's shared parts."""

    ports: Ports
    registry: ExecutorRegistry
    events: LifecycleBus
    stats: Stats
    settings: EngineSettings
