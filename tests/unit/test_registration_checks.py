"""An executor registration that could only fail later (at its first retry, or on every task it
is given) is refused at registration with ``ConfigurationError`` naming the option and the fix;
nothing is registered then."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.support.events import make_task
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core.limits import MAX_RETRIES
from tq_aws.errors import ConfigurationError

NAN = float("nan")
INF = float("inf")


def _single(task: Task, actions: Actions) -> None:
    actions.success(task)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retry_after": NAN}, "retry_after"),
        ({"retry_after": INF}, "retry_after"),
        ({"retry_after": -INF}, "retry_after"),
        ({"retry_after": -1}, "retry_after"),
        ({"retry_after": "2"}, "retry_after"),
        ({"retries": MAX_RETRIES + 1}, "retries"),
        ({"handoff_timeout": NAN}, "handoff_timeout"),
        ({"handoff_timeout": INF}, "handoff_timeout"),
        ({"handoff_timeout": 5, "max_duration": NAN}, "max_duration"),
        ({"handoff_timeout": 5, "max_duration": INF}, "max_duration"),
    ],
)
def test_numbers_that_would_fail_at_the_first_retry_are_refused(
    app: TaskQueue, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        app.executor("q", "t", **options)(_single)
    assert named in str(caught.value) and "give" in str(caught.value)
    assert len(app.registry) == 0


@pytest.mark.parametrize("options", [{"retry_after": NAN}, {"retry_after": INF}])
def test_batch_executors_are_checked_alike(app: TaskQueue, options: dict[str, Any]) -> None:
    def batch(tasks: list[Task], actions: Actions) -> None:
        pass

    with pytest.raises(ConfigurationError, match="retry_after"):
        app.batch_executor("q", "t", **options)(batch)
    assert len(app.registry) == 0


@pytest.mark.parametrize(
    ("queue_id", "type_", "named"),
    [(5, "t", "queue_id"), ("q", 5, "type"), (None, "t", "queue_id"), ("q", b"t", "type")],
)
def test_queue_ids_and_types_must_be_strings(
    app: TaskQueue, queue_id: Any, type_: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        app.executor(queue_id, type_)(_single)
    assert named in str(caught.value) and "string" in str(caught.value)
    with pytest.raises(ConfigurationError):
        app.batch_executor(queue_id, type_)(_single)
    assert len(app.registry) == 0


def test_names_with_control_characters_or_too_long_are_refused(app: TaskQueue) -> None:
    for queue_id, type_ in (("q\n", "t"), ("q", "t" * 257), ("q", "")):
        with pytest.raises(ConfigurationError):
            app.executor(queue_id, type_)(_single)
    assert len(app.registry) == 0


def _one(task: Task) -> None:
    pass


async def _three(task: Task, actions: Actions, extra: int) -> None:
    pass


def _keyword_only(task: Task, *, actions: Actions) -> None:
    pass


def _none() -> None:
    pass


@pytest.mark.parametrize("fn", [_one, _three, _keyword_only, _none, lambda t: None])
def test_a_single_executor_that_cannot_take_task_and_actions_is_refused(
    app: TaskQueue, fn: Any
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        app.executor("q", "t")(fn)
    assert "(task, actions)" in str(caught.value)
    assert len(app.registry) == 0


@pytest.mark.parametrize("fn", [_one, _three, _none])
def test_a_batch_executor_that_cannot_take_tasks_and_actions_is_refused(
    app: TaskQueue, fn: Any
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        app.batch_executor("q", "t")(fn)
    assert "(tasks, actions)" in str(caught.value)
    assert len(app.registry) == 0


class _Callable:
    def __call__(self, task: Task, actions: Actions) -> None:
        actions.success(task)


class _WrongCallable:
    def __call__(self, task: Task) -> None:
        pass


def _with_default(task: Task, actions: Actions, extra: int = 1) -> None:
    actions.success(task)


def _var_args(*args: Any) -> None:
    args[1].success(args[0])


async def _partial_target(prefix: str, task: Task, actions: Actions) -> None:
    actions.success(task, prefix)


@pytest.mark.parametrize(
    "fn",
    [_single, _with_default, _var_args, _Callable(), functools.partial(_partial_target, "p")],
)
async def test_executors_that_can_take_task_and_actions_register_and_run(
    app: TaskQueue, fn: Any
) -> None:
    app.executor("q", "t")(fn)
    [tid] = await app.add_tasks([make_task(force_store=True)])
    await app.run_until_idle()
    stored = await app.get_task(tid)
    assert stored is not None and stored.status.value == "executed"


def test_a_callable_object_of_the_wrong_shape_is_refused(app: TaskQueue) -> None:
    with pytest.raises(ConfigurationError, match="task, actions"):
        app.executor("q", "t")(_WrongCallable())
