"""The base of every lifecycle event: its name and its ``fields()`` as plain JSON data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

PRIVATE = {"private": True}
"""Field metadata of what ``fields()`` leaves out (the record, user payloads and results)."""

StopReason = Literal["shutdown", "error", "idle_timeout"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """Base of every event: ``name`` is the event's name, and the provider method that
    receives it is ``on_<name>``."""

    name: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """The event as plain JSON data (``event`` is its name), without the task record, its
        payload or its result."""
        out: dict[str, Any] = {"event": self.name} if self.name else {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("private"):
                out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, LifecycleEvent):
        return value.fields()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)
