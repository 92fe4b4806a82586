"""A flow's step tasks, kept compact from ``start_flow`` until they are dispatched.

``start_flow`` checks every step at the call (a bad step raises there, as before), but builds
no copy of it: each step is kept as the fields it was given (one small tuple, sharing the
values with the caller's task), and the dispatch-ready step tasks (id, flow metadata, times,
partition key) are built a chunk at a time as they go out. A flow of N steps so holds N tuples
rather than N full task models between the executor's return and the dispatch, and the
caller's own tasks can be freed as soon as the executor returns.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from tq_aws.core.flows import FLOW_META
from tq_aws.core.task import Task, assemble
from tq_aws.ids import derived_id

DISPATCH_CHUNK = 500
"""Steps built and dispatched together (one Kinesis ``PutRecords`` holds 500 records)."""

BuildFn = Callable[[list[Task]], list[Task]]
"""Makes dispatch-ready copies of marked steps (``prepare_tasks`` without the checks, at the
time and with the log context of the ``start_flow`` call)."""

_FIELDS = Task.model_fields
_FACTORIES = tuple(
    (name, info.default_factory) for name, info in _FIELDS.items() if info.default_factory
)
_DEFAULTS: dict[str, Any] = {
    name: info.default for name, info in _FIELDS.items() if info.default_factory is None
}
_NAMES: dict[frozenset[str], tuple[str, ...]] = {}
"""One shared tuple of field names per set of given fields (steps of a flow share one)."""


def step_id(flow_id: str, index: int) -> str:
    """The id of a flow's step that was given none: derived, so a redelivered starter
    re-creates the same steps."""
    return derived_id(flow_id, f"step:{index}")


def _shape(task: Task) -> tuple[Any, ...]:
    """``(names, payload given?, value, value, ...)``: the fields the task was given and their
    values, the payload left out (kept apart: it is what steps of one flow differ in)."""
    given = task.__pydantic_fields_set__
    key = frozenset(given)
    names = _NAMES.get(key)
    if names is None:
        names = tuple(n for n in _FIELDS if n in key and n != "payload")
        if len(_NAMES) < 256:  # bounded: a caller that sets fields at random cannot grow it
            _NAMES[key] = names
    values = task.__dict__
    return (names, "payload" in given, *(values[n] for n in names))


class FlowSteps(Sequence[Task]):
    """The step tasks of one flow, as a sequence: ``steps[i]`` (or iterating) builds the
    dispatch-ready task; ``chunks()`` builds them ``DISPATCH_CHUNK`` at a time.

    Args:
        steps: the caller's step tasks (already checked).
        flow_id: the flow they belong to.
        build: see ``BuildFn``.
    """

    __slots__ = ("_build", "_flow_id", "_payloads", "_shape_starts", "_shapes", "_types")

    def __init__(self, steps: Sequence[Task], flow_id: str, build: BuildFn):
        self._flow_id = flow_id
        self._build = build
        # Each step's payload, and its other given fields as runs of steps that share them
        # (steps of one type and queue that differ in their payload: one run), so a step
        # costs one list slot here whatever it holds.
        self._payloads: list[Any] = []
        self._shapes: list[tuple[Any, ...]] = []
        self._shape_starts: list[int] = []
        last: tuple[Any, ...] | None = None
        for index, step in enumerate(steps):
            self._payloads.append(step.payload)
            shape = _shape(step)
            if (
                last is None
                or len(shape) != len(last)
                or any(a is not b for a, b in zip(shape, last, strict=True))
            ):
                self._shapes.append(shape)
                self._shape_starts.append(index)
                last = shape
        self._types = tuple(dict.fromkeys(step.type for step in steps))

    @property
    def types(self) -> tuple[str, ...]:
        """The steps' types, each once, in order of first appearance."""
        return self._types

    def __len__(self) -> int:
        return len(self._payloads)

    @overload
    def __getitem__(self, index: int) -> Task: ...

    @overload
    def __getitem__(self, index: slice) -> list[Task]: ...

    def __getitem__(self, index: int | slice) -> Task | list[Task]:
        if isinstance(index, slice):
            return self._built(range(len(self._payloads))[index])
        if index < 0:
            index += len(self._payloads)
        if not 0 <= index < len(self._payloads):
            raise IndexError("flow step index out of range")
        return self._built(range(index, index + 1))[0]

    def __iter__(self) -> Iterator[Task]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = DISPATCH_CHUNK) -> Iterator[list[Task]]:
        """The dispatch-ready steps, ``size`` at a time, in step order."""
        total = len(self._payloads)
        for start in range(0, total, size):
            yield self._built(range(start, min(total, start + size)))

    def _built(self, indexes: range) -> list[Task]:
        total = len(self._payloads)
        return self._build([self._marked(i, total) for i in indexes])

    def _marked(self, index: int, total: int) -> Task:
        """Step ``index`` as ``start_flow`` marks it: its own fields, an id, the flow's
        metadata."""
        shape = self._shapes[bisect.bisect_right(self._shape_starts, index) - 1]
        names, with_payload, *values = shape
        fields = dict(_DEFAULTS)
        for name, factory in _FACTORIES:
            fields[name] = factory()  # type: ignore[call-arg]
        fields.update(zip(names, values, strict=True))
        fields["payload"] = self._payloads[index]
        fields["id"] = fields["id"] or step_id(self._flow_id, index)
        meta = {"flow_id": self._flow_id, "step_index": index, "total_steps": total}
        fields["metadata"] = {**fields["metadata"], FLOW_META: meta}
        given = {*names, "id", "metadata"}
        if with_payload:
            given.add("payload")
        return assemble(object.__new__(Task), fields, given)


def step_chunks(steps: Sequence[Task], size: int = DISPATCH_CHUNK) -> Iterator[list[Task]]:
    """A flow's steps ``size`` at a time: built chunk by chunk for ``FlowSteps``, sliced for a
    plain list."""
    if isinstance(steps, FlowSteps):
        yield from steps.chunks(size)
        return
    for start in range(0, len(steps), size):
        yield list(steps[start : start + size])


def step_types(steps: Sequence[Task]) -> tuple[str, ...]:
    """The steps' types, each once, in order of first appearance (no step built)."""
    if isinstance(steps, FlowSteps):
        return steps.types
    return tuple(dict.fromkeys(s.type for s in steps))


__all__ = ["DISPATCH_CHUNK", "BuildFn", "FlowSteps", "step_chunks", "step_id", "step_types"]
