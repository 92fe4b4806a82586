"""What the engine's parts share: the ports, the executor registry, the lifecycle bus, the
counters and the settings. Built once by ``Engine`` and handed to each part, so no part is
wired by hand with a dozen arguments."""

from __future__ import annotations

from dataclasses import dataclass

from tq_aws.core.claim_check import DEFAULT_RESULT_LIMIT
from tq_aws.core.executors import ExecutorRegistry
from tq_aws.core.lifecycle import LifecycleBus
from tq_aws.engine.stats import Stats
from tq_aws.errors import ConfigurationError
from tq_aws.ports import Ports


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The engine's options (see ``TaskQueue`` for each)."""

    batch_size: int = 100
    result_limit: int = DEFAULT_RESULT_LIMIT
    processing_grace: float = 0.0
    include_payload: bool = False

    def __post_init__(self) -> None:
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(f"batch_size={size!r}; give a whole number >= 1")


@dataclass(frozen=True, slots=True)
class EngineContext:
    """One app's shared parts."""

    ports: Ports
    registry: ExecutorRegistry
    events: LifecycleBus
    stats: Stats
    settings: EngineSettings
