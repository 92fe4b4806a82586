"""The ECS worker's options: checked once, kept in a frozen dataclass."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from tq_aws.errors import ConfigurationError

logger = logging.getLogger(__name__)

InitialPosition = Literal["TRIM_HORIZON", "LATEST"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How an ``EcsWorker`` holds leases, reads shards, polls queues and stops.

    Every value is checked when the options are made (``ConfigurationError`` naming the field).

    Attributes:
        lease_seconds: how long a lease lasts without renewal; a dead worker's shards are taken
            over after this long.
        renew_every: seconds between lease rounds (renew, list, take, balance); well below
            ``lease_seconds``.
        poll_interval: seconds a shard reader waits when it has caught up.
        sqs_wait_seconds: long-poll time of ``ReceiveMessage`` (0..20).
        sqs_visibility_timeout: seconds a received message stays hidden; extended every
            ``heartbeat_every`` seconds while the worker holds it.
        heartbeat_every: seconds between visibility extensions (default: a third of
            ``sqs_visibility_timeout``); ``heartbeat`` is the value in force.
        grace_seconds: how long, after a stop request, running batches and handed-off tasks
            may take before they are cancelled and handed back.
        shard_refresh_seconds: how often the shards are listed again (a reshard is noticed
            within this; a shard read to its end triggers a listing at once).
        initial_position: where a shard with no checkpoint is read from: ``TRIM_HORIZON``
            (everything kept) or ``LATEST`` (records written from the second its lease was
            created on: ``AT_TIMESTAMP`` travels in whole seconds, so records of that second
            written just before are read too). Shards born from a reshard are always read
            from their start.
    """

    lease_seconds: float = 10.0
    renew_every: float = 3.0
    poll_interval: float = 1.0
    sqs_wait_seconds: int = 20
    sqs_visibility_timeout: int = 60
    heartbeat_every: float | None = None
    grace_seconds: float = 30.0
    shard_refresh_seconds: float = 30.0
    initial_position: InitialPosition = "TRIM_HORIZON"

    def __post_init__(self) -> None:
        _positive("lease_seconds", self.lease_seconds)
        _positive("renew_every", self.renew_every)
        if self.renew_every >= self.lease_seconds:
            raise ConfigurationError(
                f"renew_every={self.renew_every!r} is not below lease_seconds="
                f"{self.lease_seconds!r}; renew well within the lease (e.g. a third of it)"
            )
        _positive("poll_interval", self.poll_interval)
        _positive("shard_refresh_seconds", self.shard_refresh_seconds)
        if not self.grace_seconds >= 0:
            raise ConfigurationError(f"grace_seconds={self.grace_seconds!r}; give seconds >= 0")
        if not 0 <= self.sqs_wait_seconds <= 20:
            raise ConfigurationError(f"sqs_wait_seconds={self.sqs_wait_seconds!r}; give 0..20")
        if not 1 <= self.sqs_visibility_timeout <= 43_200:
            raise ConfigurationError(
                f"sqs_visibility_timeout={self.sqs_visibility_timeout!r}; give 1..43200 seconds"
            )
        heartbeat = self.heartbeat
        _positive("heartbeat_every", heartbeat)
        if heartbeat >= self.sqs_visibility_timeout:
            raise ConfigurationError(
                f"heartbeat_every={heartbeat!r} is not below sqs_visibility_timeout="
                f"{self.sqs_visibility_timeout!r}; extend the visibility before it runs out"
            )
        if self.initial_position not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigurationError(
                f"initial_position={self.initial_position!r}; give 'TRIM_HORIZON' or 'LATEST'"
            )
        for name in (
            "lease_seconds",
            "renew_every",
            "poll_interval",
            "grace_seconds",
            "shard_refresh_seconds",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("sqs_wait_seconds", "sqs_visibility_timeout"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def heartbeat(self) -> float:
        """Seconds between visibility extensions: ``heartbeat_every``, or a third of
        ``sqs_visibility_timeout``."""
        if self.heartbeat_every is None:
            return self.sqs_visibility_timeout / 3
        return float(self.heartbeat_every)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name}={value!r}; give seconds > 0")


__all__ = ["InitialPosition", "WorkerOptions"]
