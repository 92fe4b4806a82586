"""What an executor can do: decide tasks, add child tasks, log with the task's context.

Actions only record intent. Nothing is written until the batch is post-processed, so an attempt
that will be retried leaves no children behind, and the first decision per task wins.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, overload

import pydantic_core
from pydantic import BaseModel

from tq_aws.core.flow_steps import DISPATCH_CHUNK, FlowSteps, step_id
from tq_aws.core.flows import (
    FLOW_META,
    FailurePolicy,
    FlowRecord,
    FlowStart,
    Join,
    validate_flow_options,
)
from tq_aws.core.json_values import to_checked_json
from tq_aws.core.log_context import TaskLoggerAdapter
from tq_aws.core.payloads import M, payload_as
from tq_aws.core.task import Entity, Task
from tq_aws.core.task_checks import NOTHING_ADDED, where
from tq_aws.errors import (
    DecisionError,
    PermanentFailure,
    ResultNotSerializableError,
    TaskValidationError,
)
from tq_aws.ids import derived_id, new_id

logger = logging.getLogger(__name__)
# Executors log through this one logger (``actions.logger``): a user filters their tasks' own
# messages by this name, apart from the library's module loggers.
task_logger = logging.getLogger("tq_aws.task")


class PrepareFn(Protocol):
    """Makes dispatch-ready copies of tasks an executor adds (``prepare_tasks`` on the app's
    registry); with ``build=False`` it only checks them (and returns ``[]``); ``now`` fixes
    the time they are added at, ``validate=False`` skips the checks."""

    def __call__(
        self,
        tasks: Sequence[Task],
        context: Mapping[str, str],
        /,
        *,
        now: datetime | None = None,
        validate: bool = True,
        build: bool = True,
    ) -> list[Task]: ...


NO_DECISION = "executor returned without calling actions.success() or actions.fail()"


@dataclass(slots=True)
class Decision:
    """The outcome an executor chose for one task."""

    kind: Literal["success", "fail"]
    result: Any = None
    result_size: int = 0
    error: str | None = None
    stack: str | None = None
    meta: dict[str, Any] | None = None
    retry: bool = True
    """``False``: a failure for good, its remaining retries skipped (``PermanentFailure``)."""


PLAIN_SUCCESS = Decision(kind="success")
"""``success(task)`` without a result: one shared decision (decisions are never changed)."""
NO_DECISION_FAILURE = Decision(kind="fail", error=NO_DECISION)
"""What a task the executor left undecided gets (shared, like ``PLAIN_SUCCESS``)."""


@dataclass(slots=True)
class BatchBook:
    """Everything executors recorded while one delivered batch ran."""

    tasks: dict[str, Task]
    decisions: dict[str, Decision] = field(default_factory=dict)
    children: dict[str, list[Task]] = field(default_factory=dict)
    batch_children: list[Task] = field(default_factory=list)
    flows: dict[str, list[FlowStart]] = field(default_factory=dict)
    batch_flows: list[FlowStart] = field(default_factory=list)
    handed_off: set[str] = field(default_factory=set)
    made: dict[str, int] = field(default_factory=dict)
    """How many children and flows each owner made so far: the index in their derived ids."""

    def next_index(self, owner_key: str) -> int:
        n = self.made.get(owner_key, 0)
        self.made[owner_key] = n + 1
        return n

    def decide(self, task: Task, decision: Decision) -> bool:
        """Record ``decision`` unless the task was decided already; return whether it counted."""
        task_id = task.id
        if task_id is None or task_id not in self.tasks:
            raise DecisionError(
                f"task {task_id!r} ({task.queue_id}/{task.type}) is not part of the running "
                "batch; decide only tasks handed to this executor"
            )
        first = self.decisions.get(task_id)
        if first is not None:
            logger.warning(
                "task %s already decided (%s); later %s dropped", task_id, first.kind, decision.kind
            )
            return False
        self.decisions[task_id] = decision
        return True


def _as_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def jsonable_result(result: Any) -> tuple[Any, int]:
    """Return ``result`` as plain JSON data and its size in bytes, or raise a typed error."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        data = pydantic_core.to_jsonable_python(result)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
        raise ResultNotSerializableError(
            f"actions.success(task, result): result of type {type(result).__name__} cannot be "
            f"stored as JSON ({exc}); return plain data (dict, list, str, number) or a pydantic "
            "model"
        ) from exc
    # NaN, infinities and integers over 4,300 digits serialise, but do not read back
    text, problem = to_checked_json(data, "result")
    if problem is not None or text is None:
        reason = f"{problem.path} {problem.reason}" if problem else "cannot be stored as JSON"
        raise ResultNotSerializableError(f"actions.success(task, result): {reason}")
    return data, len(text)


def failure_decision(
    error: BaseException | str | None, meta: Mapping[str, Any] | None, *, retry: bool = True
) -> Decision:
    """Build a failure from an exception (message and stack) or a message. A
    ``PermanentFailure`` (or ``retry=False``) is a failure for good; its ``meta`` is merged
    under the given ``meta``."""
    message: str | None
    stack: str | None = None
    if isinstance(error, BaseException):
        message = str(error) or type(error).__name__
        stack = "".join(traceback.format_exception(error))
        if isinstance(error, PermanentFailure):
            retry = False
            if error.meta:
                meta = {**error.meta, **(meta or {})}
    else:
        message = error
    return Decision(
        kind="fail", error=message, stack=stack, meta=dict(meta) if meta else None, retry=retry
    )


class Actions:
    """The actions object handed to an executor.

    Single-task executors get one bound to their task; batch executors get one bound to the
    batch (pass ``parent=`` to ``add_tasks`` to tie children to one task of the batch).

    Example:
        >>> @app.executor("emails", "send")
        ... async def send(task, actions):
        ...     actions.log.info("sending")
        ...     actions.add_tasks([Task(type="audit", queue_id="emails", payload={})])
        ...     actions.success(task, {"message_id": "m-1"})
    """

    __slots__ = (
        "_batch_key",
        "_book",
        "_context",
        "_log",
        "_models",
        "_now",
        "_payload_model",
        "_prepare",
        "_task",
    )

    def __init__(
        self,
        book: BatchBook,
        prepare: PrepareFn,
        task: Task | None,
        context: Mapping[str, str],
        now: Callable[[], datetime],
        batch_key: str | None = None,
        payload_model: type[BaseModel] | None = None,
    ):
        self._book = book
        self._payload_model = payload_model
        self._models: dict[tuple[str | None, type[BaseModel]], BaseModel] | None = None
        self._batch_key = batch_key
        self._prepare = prepare
        self._task = task
        self._context = context
        self._now = now
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    def success(self, task: Task, result: Any = None) -> None:
        """Mark ``task`` executed, optionally with a JSON-serialisable ``result``.

        Raises:
            ResultNotSerializableError: the result cannot be stored as JSON (raised here, at the
                call that made it, so the executor fails loudly instead of losing the result).
        """
        if task is not self._task:
            self._check_own(task)
        elif result is None and task.id not in self._book.decisions:
            self._book.decisions[task.id or ""] = PLAIN_SUCCESS  # its own task: the hot path
            return
        if result is None:
            self._book.decide(task, PLAIN_SUCCESS)
            return
        data, size = jsonable_result(result)
        self._book.decide(task, Decision(kind="success", result=data, result_size=size))

    def fail(
        self,
        task: Task,
        error: BaseException | str | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        retry: bool = True,
    ) -> None:
        """Mark this attempt of ``task`` failed. ``error`` (message and, for exceptions, stack)
        and ``meta`` are merged into ``execution_stats``.

        Whether it is retried is decided afterwards from its ``retries``; ``retry=False`` (or a
        ``PermanentFailure`` as ``error``) fails it for good: the remaining retries are skipped
        and it ends ``failed`` at once, as when its retries are exhausted.
        """
        self._check_own(task)
        self._book.decide(task, failure_decision(error, meta, retry=retry))

    @overload
    def payload(self, task: Task) -> Any: ...

    @overload
    def payload(self, task: Task, model: type[M]) -> M: ...

    def payload(self, task: Task, model: type[BaseModel] | None = None) -> Any:
        """The task's payload as an instance of the executor's ``payload_model``.

        ``add_tasks`` validated the payload against the model and the record carries it as
        plain JSON; this validates it again into the model (once per task: a second call
        returns the same instance). Pass ``model`` to name the class for type checkers (or to
        use one without registering it); without either, the payload is returned as it is.

        Raises:
            PermanentFailure: the payload does not match the model (a record written by an
                older producer, say). Raised out of the executor it fails the task for good,
                since a retry carries the same payload; a batch executor can catch it and
                ``actions.fail(task, exc)`` that task alone.

        Example:
            >>> class Email(BaseModel):
            ...     to: str
            >>> @app.executor("emails", "send", payload_model=Email)
            ... async def send(task, actions):
            ...     email = actions.payload(task, Email)
            ...     actions.success(task, {"sent_to": email.to})
        """
        cls = model or self._payload_model
        if cls is None:
            return task.payload
        key = (task.id, cls)
        models = self._models
        if models is None:
            models = self._models = {}
        elif key in models:
            return models[key]
        value = payload_as(task, cls)
        models[key] = value
        return value

    def _check_own(self, task: Task) -> None:
        # A single-task executor decides its own task only: deciding a neighbour in the batch
        # would silently drop that neighbour's own decision.
        own = self._task
        if own is not None and task.id != own.id and task.id in self._book.tasks:
            raise DecisionError(
                f"task {task.id!r} is not part of this executor's call: a single-task executor "
                f"decides only its own task ({own.id})"
            )

    def add_tasks(self, tasks: Sequence[Task], *, parent: Task | None = None) -> list[str]:
        """Add child tasks and return their ids.

        Children inherit the parent's log context (their own keys win) and are dispatched when
        the parent's attempt ends for good (success or final failure); an attempt that will be
        retried dispatches nothing, since the retry adds them again.
        """
        if parent is not None:
            self._check_own(parent)
        owner = parent if parent is not None else self._task
        context = owner.log_context if owner is not None else {}
        # Ids derive from the owner's attempt, so a redelivered attempt re-adds the same
        # children rather than new ones.
        key = self._owner_key(owner)
        named = [
            t if not isinstance(t, Task) or t.id else t.copy_with(id=self._derive(key, "child"))
            for t in tasks
        ]
        prepared = self._prepare(named, context)
        if owner is None:
            self._book.batch_children.extend(prepared)
        else:
            if owner.id not in self._book.tasks:
                raise DecisionError(f"parent task {owner.id!r} is not part of the running batch")
            self._book.children.setdefault(owner.id or "", []).extend(prepared)
        return [t.id or "" for t in prepared]

    def start_flow(
        self,
        steps: Sequence[Task],
        join: Join,
        failure_policy: FailurePolicy = "continue",
        tolerated_failures: int | None = None,
        tolerated_failure_percentage: float | None = None,
        timeout: float | None = None,
        entity: Entity | None = None,
        *,
        parent: Task | None = None,
    ) -> str:
        """Fan out ``steps`` and fan in to one ``join`` task; return the flow id.

        The join task gets ``{"flow_results": {"flow_id", "steps": [...], "aborted"?,
        "timed_out"?}}`` once every step reached its final outcome, at once when the failure
        policy aborts, or at ``timeout`` seconds with the results so far. Parse it with
        ``tq_aws.FlowResults.from_task(task)`` (``.steps``, ``.succeeded``, ``.failed``; each
        step's ``status`` is ``success`` or ``fail``).

        Args:
            steps: ordinary tasks of any ``(queue_id, type)``; step indexes follow this order.
            join: where the join task goes.
            failure_policy: ``continue`` (the join gets every result, failures included) or
                ``abort`` (the first final failure joins at once with ``aborted: true``).
            tolerated_failures: abort once MORE than this many steps failed.
            tolerated_failure_percentage: abort once MORE than this share (0..100) failed.
            timeout: seconds until the join is dispatched with partial results and
                ``timed_out: true`` if the flow is still open.
            entity: entity for the flow-level projection row (``task_id == flow_id``).
            parent: in a batch executor, the task of the batch that owns the flow.

        Like children, the flow starts when the owning attempt ends for good. Its id derives
        from the owning task, attempt and call order, so a redelivered attempt starts the same
        flow again, which is a no-op.
        """
        if not isinstance(join, Join):
            raise TaskValidationError(
                "start_flow(join=...): pass tq_aws.Join(queue_id=..., type=...)", field="join"
            )
        validate_flow_options(
            steps, failure_policy, tolerated_failures, tolerated_failure_percentage, timeout
        )
        if parent is not None:
            self._check_own(parent)
        owner = parent if parent is not None else self._task
        if owner is not None and owner.id not in self._book.tasks:
            raise DecisionError(f"parent task {owner.id!r} is not part of the running batch")
        now = self._now()
        if owner is None:
            registry = self._book.batch_flows
        else:
            registry = self._book.flows.setdefault(owner.id or "", [])
        flow_id = self._derive(self._owner_key(owner), "flow")
        total = len(steps)
        context = dict(owner.log_context) if owner is not None else {}
        # Every step is checked here, a chunk of marked copies at a time that is dropped once
        # checked; the steps are built again, chunk by chunk, as they are dispatched
        # (tq_aws.core.flow_steps), so a flow of N steps holds no N task copies meanwhile.
        seen: dict[str, int] = {}
        for first in range(0, total, DISPATCH_CHUNK):
            marked = []
            for index in range(first, min(total, first + DISPATCH_CHUNK)):
                step = steps[index]
                if not isinstance(step, Task):
                    raise TaskValidationError(
                        f"start_flow: steps[{index}] is a {type(step).__name__}; pass Task objects",
                        index=index,
                        field="steps",
                    )
                meta = {"flow_id": flow_id, "step_index": index, "total_steps": total}
                marked.append(
                    step.copy_with(
                        **{
                            "id": step.id or step_id(flow_id, index),
                            "metadata": {**step.metadata, FLOW_META: meta},
                        }
                    )
                )
            explicit = [bool(steps[i].id) for i in range(first, first + len(marked))]
            self._check_steps(marked, explicit, context, now, first, seen)
        prepare = self._prepare

        def build(marked: list[Task]) -> list[Task]:
            return prepare(marked, context, now=now, validate=False)

        prepared = FlowSteps(steps, flow_id, build)
        record = FlowRecord(
            flow_id=flow_id,
            total=total,
            join=join,
            failure_policy=failure_policy,
            tolerated_failures=tolerated_failures,
            tolerated_failure_percentage=(
                None
                if tolerated_failure_percentage is None
                else float(tolerated_failure_percentage)
            ),
            started_at=now,
            deadline=None if timeout is None else now + timedelta(seconds=timeout),
            entity=entity,
            log_context=context,
            parent_task_id=owner.id if owner is not None else None,
        )
        registry.append(FlowStart(record=record, steps=prepared))
        return flow_id

    def _check_steps(
        self,
        marked: list[Task],
        explicit: list[bool],
        context: Mapping[str, str],
        now: datetime,
        first: int,
        seen: dict[str, int],
    ) -> None:
        """Check a chunk of marked steps as ``add_tasks`` would; an error names the step's
        index in ``steps``, and two steps given one id are refused across chunks too (only
        given ids are remembered: a flow of N steps keeps no N derived ids meanwhile)."""
        try:
            self._prepare(marked, context, now=now, build=False)
        except TaskValidationError as exc:
            if exc.index is None or first == 0:
                raise
            index = first + exc.index
            raise TaskValidationError(
                str(exc).replace(f"tasks[{exc.index}]", f"tasks[{index}]", 1),
                index=index,
                field=exc.field,
            ) from exc
        for offset, step in enumerate(marked):
            index, task_id = first + offset, step.id or ""
            if not explicit[offset]:
                continue  # derived from the flow id and the index: unique, and not kept
            other = seen.get(task_id)
            if other is not None:
                raise TaskValidationError(
                    f"{where(step, index)}: id {task_id!r} is also the id of tasks[{other}]; "
                    f"give each task of a call its own id. {NOTHING_ADDED.capitalize()}.",
                    index=index,
                    field="id",
                )
            seen[task_id] = index

    def _owner_key(self, owner: Task | None) -> str:
        if owner is not None:
            return f"{owner.id}\x00a{owner.retry_count}"
        return self._batch_key or new_id()

    def _derive(self, owner_key: str, kind: str) -> str:
        base, _, attempt = owner_key.partition("\x00")
        n = self._book.next_index(owner_key)
        return derived_id(base, f"{attempt}:{kind}:{n}", order=n)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A ``logging`` adapter bound to the task's log context (runtime keys win)."""
        if self._log is None:
            self._log = TaskLoggerAdapter(task_logger, self._context)
        return self._log
