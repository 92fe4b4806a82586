"""Log context: limits, runtime keys, the task logger adapter, record attributes, isolation."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from tests.support.events import make_task
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core import log_context
from tq_aws.core.log_context import LogContextFilter, render, sanitize


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


# -- limits --------------------------------------------------------------------------------


def test_more_than_ten_keys_keeps_the_first_ten_alphabetically(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = {k: k.upper() for k in "kjihgfedcba"}
    with caplog.at_level(logging.WARNING, logger="tq_aws"):
        kept = sanitize(ctx)
    assert kept == {k: k.upper() for k in "abcdefghij"}
    assert any("11 keys" in r.getMessage() for r in caplog.records)


def test_context_over_1024_json_chars_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tq_aws"):
        assert sanitize({"blob": "x" * 1100}) is None
    assert any("1024" in r.getMessage() for r in caplog.records)
    assert sanitize({"blob": "x" * 1000}) == {"blob": "x" * 1000}


def test_limit_keeps_a_ten_key_context_and_drops_an_oversized_one() -> None:
    assert sanitize({"blob": "x" * 1014}) is None  # 1025 characters even compact
    ten = {f"k{n}": "v" * 90 for n in range(10)}
    assert sanitize(ten) == ten


@pytest.mark.parametrize(
    "ctx",
    [
        {"blob": "x" * 1013},  # compact JSON is exactly 1024 characters
        {"name": "Zoë Ñúñez 日本" * 40},  # 491 characters compact, 1692 with ASCII escapes
    ],
)
def test_size_limit_counts_compact_json_characters(ctx: dict[str, str]) -> None:
    assert sanitize(ctx) == ctx


def test_sanitize_stringifies_and_ignores_non_mappings() -> None:
    assert sanitize({"n": 1, "ok": True}) == {"n": "1", "ok": "True"}
    assert sanitize(["a"]) is None
    assert sanitize({}) is None


def test_render_sorts_keys_and_sanitises_values() -> None:
    rendered = render({"b": "two]x", "a": "line\nbreak\ttab\x7f", "c]": "3"})
    assert rendered == "[a:line_break_tab_][b:two_x][c_:3]"
    assert render({}) == ""


async def test_add_tasks_applies_the_limits(app: TaskQueue) -> None:
    many = {f"k{n:02d}": str(n) for n in range(12)}
    ids = await app.add_tasks(
        [
            make_task(force_store=True, metadata={"log_context": many}),
            make_task(
                force_store=True,
                metadata={"log_context": {"big": "y" * 2000}, "other": "kept"},
            ),
        ]
    )
    first, second = [await app.get_task(i) for i in ids]
    assert first is not None and second is not None
    assert first.log_context == {f"k{n:02d}": str(n) for n in range(10)}
    assert second.metadata == {"other": "kept"}


# -- inside executors ----------------------------------------------------------------------


async def test_actions_log_prefixes_the_sorted_context_and_sets_attributes(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("emails", "send")
    async def send(task: Task, actions: Actions) -> None:
        actions.log.info("sending %s", "now")
        actions.success(task)

    [tid] = await app.add_tasks(
        [make_task("send", "emails", metadata={"log_context": {"request_id": "r-1"}})]
    )
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    [record] = _records(caplog, "tq_aws.task")
    assert record.getMessage() == (
        f"[queue_id:emails][request_id:r-1][task_id:{tid}][task_type:send][worker_id:w-1] "
        "sending now"
    )
    assert (record.request_id, record.task_id, record.task_type) == ("r-1", tid, "send")
    assert (record.queue_id, record.worker_id) == ("emails", "w-1")
    assert record.tq_log_context == {
        "request_id": "r-1",
        "task_id": tid,
        "task_type": "send",
        "queue_id": "emails",
        "worker_id": "w-1",
    }
    assert record.tq_context == record.getMessage().removesuffix(" sending now")


async def test_runtime_keys_win_over_user_keys(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.log.warning("hello")
        actions.success(task)

    spoof = {"task_id": "spoofed", "worker_id": "evil", "queue_id": "x", "task_type": "y"}
    [tid] = await app.add_tasks([make_task(metadata={"log_context": spoof})])
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    [record] = _records(caplog, "tq_aws.task")
    assert (record.task_id, record.worker_id, record.queue_id, record.task_type) == (
        tid,
        "w-1",
        "q",
        "t",
    )
    assert "spoofed" not in record.getMessage() and "evil" not in record.getMessage()


async def test_call_extra_wins_over_context_keys(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        actions.log.info("x", extra={"request_id": "from-call", "attempt": 3})
        actions.success(task)

    await app.add_tasks([make_task(metadata={"log_context": {"request_id": "r-1"}})])
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    [record] = _records(caplog, "tq_aws.task")
    assert (record.request_id, record.attempt) == ("from-call", 3)


async def test_any_logger_inside_an_executor_carries_the_context(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t")
    def run(task: Task, actions: Actions) -> None:
        logging.getLogger("myapp.billing").info("charging")
        actions.success(task)

    [tid] = await app.add_tasks([make_task(metadata={"log_context": {"order": "o-9"}})])
    with caplog.at_level(logging.INFO):
        logging.getLogger("myapp.billing").info("outside")
        await app.run_until_idle()
    outside, inside = _records(caplog, "myapp.billing")
    assert (outside.tq_log_context, outside.tq_context) == ({}, "")
    assert inside.tq_log_context["order"] == "o-9"
    assert inside.tq_log_context["task_id"] == tid
    assert (
        inside.tq_context == f"[order:o-9][queue_id:q][task_id:{tid}][task_type:t][worker_id:w-1]"
    )
    assert log_context.current() == {}


async def test_log_context_filter_lets_a_format_print_the_keys(app: TaskQueue) -> None:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(LogContextFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s|%(task_type)s|%(message)s"))
    logger = logging.getLogger("myapp.filtered")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        logger.info("inside")
        actions.success(task)

    try:
        await app.add_tasks([make_task(metadata={"log_context": {"request_id": "r-7"}})])
        await app.run_until_idle()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert lines == ["r-7|t|inside"]


async def test_parallel_async_tasks_have_isolated_contexts(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t", parallel=True, chunk_size=5)
    async def run(task: Task, actions: Actions) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # interleave with the rest of the chunk
            logging.getLogger("myapp.par").info("step %s", task.payload)
        actions.success(task)

    await app.add_tasks(
        [make_task(payload=n, metadata={"log_context": {"n": str(n)}}) for n in range(5)]
    )
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    records = _records(caplog, "myapp.par")
    assert len(records) == 15
    assert all(r.tq_log_context["n"] == r.getMessage().split()[-1] for r in records)


async def test_parallel_thread_tasks_have_isolated_contexts(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    barrier = threading.Barrier(4, timeout=10)

    @app.executor("q", "t", parallel=True, chunk_size=4)
    def run(task: Task, actions: Actions) -> None:
        barrier.wait()  # all four threads are inside their executors together
        actions.log.info("p=%s", task.payload)
        actions.success(task)

    ids = await app.add_tasks(
        [make_task(payload=n, metadata={"log_context": {"n": str(n)}}) for n in range(4)]
    )
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    records = _records(caplog, "tq_aws.task")
    assert sorted((r.n, r.task_id) for r in records) == [(str(n), ids[n]) for n in range(4)]
    assert all(r.getMessage().endswith(f"p={r.n}") for r in records)


async def test_batch_executor_context_has_batch_keys_only(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.batch_executor("q", "b")
    async def run(tasks: list[Task], actions: Actions) -> None:
        actions.log.info("batch")
        for t in tasks:
            actions.success(t)

    await app.add_tasks(
        [make_task("b", metadata={"log_context": {"user_key": "u"}}) for _ in range(3)]
    )
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    [record] = _records(caplog, "tq_aws.task")
    assert record.tq_log_context == {
        "task_type": "b",
        "queue_id": "q",
        "worker_id": "w-1",
        "batch_size": "3",
    }


async def test_adapter_keeps_its_context_after_the_executor_returned(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    kept: list[logging.LoggerAdapter[logging.Logger]] = []

    @app.executor("q", "t")
    async def run(task: Task, actions: Actions) -> None:
        kept.append(actions.log)
        actions.success(task)

    [tid] = await app.add_tasks([make_task()])
    await app.run_until_idle()
    with caplog.at_level(logging.INFO):
        kept[0].info("late line")
    [record] = _records(caplog, "tq_aws.task")
    assert record.tq_log_context["task_id"] == tid
    assert f"[task_id:{tid}]" in record.tq_context


async def test_retries_keep_the_log_context(
    app: TaskQueue, caplog: pytest.LogCaptureFixture
) -> None:
    @app.executor("q", "t", retries=1, retry_after=0)
    async def run(task: Task, actions: Actions) -> None:
        actions.log.info("attempt %d", task.retry_count)
        actions.fail(task, "again")

    await app.add_tasks([make_task(metadata={"log_context": {"trace": "tr-1"}})])
    with caplog.at_level(logging.INFO):
        await app.run_until_idle()
    records = _records(caplog, "tq_aws.task")
    assert [(r.trace, r.getMessage()[-9:]) for r in records] == [
        ("tr-1", "attempt 0"),
        ("tr-1", "attempt 1"),
    ]


async def test_inherited_context_is_limited_too(app: TaskQueue) -> None:
    seen: list[dict[str, str]] = []

    @app.executor("q", "parent")
    async def parent(task: Task, actions: Actions) -> None:
        own = {f"c{n}": "child" for n in range(6)}
        actions.add_tasks([make_task("child", metadata={"log_context": own})])
        actions.success(task)

    @app.executor("q", "child")
    async def child(task: Task, actions: Actions) -> None:
        seen.append(task.log_context)
        actions.success(task)

    parent_ctx = {f"p{n}": "parent" for n in range(6)}
    await app.add_tasks([make_task("parent", metadata={"log_context": parent_ctx})])
    await app.run_until_idle()
    expected = sorted([*(f"c{n}" for n in range(6)), *(f"p{n}" for n in range(6))])[:10]
    assert sorted(seen[0]) == expected
