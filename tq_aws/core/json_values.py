"""Whether a value survives the trip as JSON on every backend: task payloads at ``add_tasks``
and results at ``actions.success``.

pydantic writes NaN and infinities as ``null`` and writes integers of any length, which JSON
readers then refuse; so a value is checked, not merely serialised. The common case costs one
serialisation: the slow walk that names the place at fault runs only when the serialised text
holds a suspect token (``NaN``, ``Infinity``, a very long run of digits) or did not serialise.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import pydantic_core
from pydantic import BaseModel

from tq_aws.core.limits import MAX_INT_DIGITS, int_too_long

_SUSPECT = re.compile(rb"NaN|Infinity|\d{%d}" % (MAX_INT_DIGITS + 1))


@dataclasses.dataclass(frozen=True, slots=True)
class JsonProblem:
    """Where a value is not JSON every backend reads back, and why.

    Attributes:
        path: dotted path from the checked value (``payload.items[2].price``).
        reason: what is wrong, ending with how to fix it.
    """

    path: str
    reason: str


def to_checked_json(value: Any, root: str) -> tuple[bytes | None, JsonProblem | None]:
    """Serialise ``value`` as JSON and check it: ``(json, None)`` when it reads back as it
    is, ``(None, problem)`` otherwise. ``root`` names the value in the problem's path."""
    try:
        data = pydantic_core.to_json(value, inf_nan_mode="constants")
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
        found = find_problem(value, root)
        return None, found or JsonProblem(root, f"cannot be written as JSON ({exc})")
    if _SUSPECT.search(data) is None:
        return data, None
    found = find_problem(value, root)
    return (None, found) if found is not None else (data, None)


def find_problem(value: Any, path: str) -> JsonProblem | None:
    """The first place in ``value`` that JSON cannot carry faithfully, or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return JsonProblem(path, "holds a lone surrogate; give valid text")
        return None
    if isinstance(value, int):
        if int_too_long(value):
            return JsonProblem(
                path,
                f"is an integer of more than {MAX_INT_DIGITS} digits, which JSON readers "
                "refuse; send it as a string",
            )
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return JsonProblem(
                path,
                f"is {value}, which JSON cannot carry (it would arrive as null); give a "
                "finite number, or None",
            )
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            # keys are written as strings whatever their type (as json.dumps does); only a
            # key that is not valid text cannot be written at all
            found = (
                find_problem(key, f"{path}[{key!r}]") if isinstance(key, str) else None
            ) or find_problem(item, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            found = find_problem(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(value, BaseModel):
        return find_problem(value.model_dump(mode="python"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return find_problem(dataclasses.asdict(value), path)
    try:
        pydantic_core.to_json(value, inf_nan_mode="constants")
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        return JsonProblem(
            path,
            f"is of type {type(value).__name__}, which cannot be written as JSON; give plain data "
            "(dict, list, str, number, bool, None) or a pydantic model",
        )
    return None


__all__ = ["JsonProblem", "find_problem", "to_checked_json"]
