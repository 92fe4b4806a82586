"""The demo runs the shop story to the end, on a terminal and off one."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from rich.console import Console

from tq_aws import demo
from tq_aws.cli import main
from tq_aws.core.task import TaskStatus
from tq_aws.demo import shop


def plain_console() -> Console:
    return Console(file=io.StringIO(), width=120)


def terminal_console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100, height=40)


def output(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_fast_run_prints_the_outcome_plainly() -> None:
    console = plain_console()
    assert demo.run_demo(fast=True, console=console) == 0
    text = output(console)
    assert "\x1b[" not in text  # no terminal codes off a terminal
    assert "Final entity status at 09:01:35" in text
    assert "alice: $42.00 charge executed on attempt 1; receipt executed" in text
    assert "bob: $18.50 charge executed on attempt 3; receipt executed" in text
    assert "carol: $99.00 charge failed after 3 attempts (insufficient funds)" in text
    assert "dave's newsletter: cancelled, run 0 times" in text
    assert "one batch executor call took all 3 sales (3 ok, 0 failed)" in text
    assert (
        "app.stats: added=19  batches=13  executed=16  failed=2  retried=7  cancelled=1  "
        "flows_started=1  flows_closed=1" in text
    )
    assert (
        "fanned out to 6 warehouse/pick steps and joined at 09:01:35: 5 succeeded, 1 failed" in text
    )
    assert "the join reports/month_end.done ran once with all 6 step results" in text
    assert "the flow's own row on the shop ended executed" in text
    assert "Everything ended as the story says." in text
    # the running log shows retries with their backoff and the library's log lines
    assert (
        "orders/charge for bob attempt 1 failed (card declined: issuer timeout); retry at 09:00:01"
        in text
    )
    assert (
        "orders/charge for bob attempt 2 failed (card declined: issuer timeout); retry at 09:00:05"
        in text
    )
    assert "[customer:bob][order:o-1002] charging $18.50 (attempt 3)" in text
    # the flow's counts move from frame to frame until it joins
    assert "open: 4 succeeded, 0 failed, 2 pending" in text
    assert "open: 5 succeeded, 0 failed, 1 pending" in text
    assert "joined: 5 succeeded, 1 failed" in text
    assert "the worker runs: warehouse/pick #1, #5 (attempt 2)" in text


async def test_end_state_read_back_through_the_api() -> None:
    day = await demo.play(plain_console(), fast=True)
    app, ids = day.app, day.task_ids
    assert demo.problems(day) == []

    bob = await app.get_task(ids["bob/charge"])
    assert bob is not None
    assert (bob.status, bob.retry_count) == (TaskStatus.EXECUTED, 2)
    carol = await app.get_task(ids["carol/charge"])
    assert carol is not None
    assert (carol.status, carol.retry_count) == (TaskStatus.FAILED, 2)
    assert carol.execution_stats["last_error"] == "insufficient funds"
    newsletter = await app.get_task(ids["dave/newsletter"])
    assert newsletter is not None
    assert newsletter.status is TaskStatus.CANCELLED

    rows = await app.entity_status(demo.customer("carol"))
    assert [(r.task_type, r.status, r.error) for r in rows] == [
        ("charge", "failed", "insufficient funds")
    ]
    rows = await app.entity_status(demo.customer("dave"))
    assert [(r.task_type, r.status) for r in rows] == [
        ("charge", "executed"),
        ("newsletter", "cancelled"),
        ("receipt", "executed"),
        ("aggregate", "executed"),
    ]
    assert rows[3].result == {"sales_in_batch": 3, "morning_total": "$72.50"}
    assert [b for b in day.monitor.batches if b[0] == "reports/aggregate"] == [
        ("reports/aggregate", 3, 3, 0)
    ]
    assert day.monitor.attempts[ids["bob/charge"]] == 3
    assert ids["dave/newsletter"] not in day.monitor.attempts


async def test_the_month_end_flow_fans_out_and_joins_once() -> None:
    day = await demo.play(plain_console(), fast=True)
    app = day.app
    [flow_id] = day.monitor.flows
    status = await app.flow_status(flow_id)
    assert status is not None
    counts = (status.state, status.total, status.succeeded, status.failed, status.pending)
    assert counts == ("joined", 6, 5, 1, 0)
    assert status.failure_policy == "continue"
    assert status.finished_at == demo.CLOSE_OF_MORNING + timedelta(seconds=5)
    assert day.monitor.closed == [(flow_id, "joined", 5, 1)]
    assert (app.stats.flows_started, app.stats.flows_closed) == (1, 1)

    # one join, run once, with every step's outcome in step order
    join = await app.get_task(status.join_task_id)
    assert join is not None
    assert (join.queue_id, join.type, join.status) == (
        "reports",
        "month_end.done",
        TaskStatus.EXECUTED,
    )
    assert [r for r in day.monitor.runs if r[0] == "reports/month_end.done"] == [
        ("reports/month_end.done", "shop", 1)
    ]
    results = join.payload["flow_results"]
    assert results["flow_id"] == flow_id
    assert "aborted" not in results
    assert "timed_out" not in results
    steps = results["steps"]
    assert [s["step_index"] for s in steps] == list(range(6))
    assert [s["status"] for s in steps] == ["success"] * 4 + ["fail", "success"]
    assert [s.get("result", {}).get("item") for s in steps] == [
        "teapot",
        "green tea",
        "notebook",
        "fountain pen",
        None,
        "coffee beans",
    ]
    assert steps[4]["error"] == "out of stock: ink"
    assert join.execution_result == {"steps": 6, "picked": 5, "problems": "out of stock: ink"}

    # the shop's rows: the flow's own row (task_id == flow id) carries the join's outcome
    rows = await app.entity_status(demo.SHOP)
    [flow_row] = [r for r in rows if r.task_id == flow_id]
    assert (flow_row.queue_id, flow_row.task_type, flow_row.status) == (
        "reports",
        "month_end.done",
        "executed",
    )
    assert flow_row.result == join.execution_result
    picks = [r for r in rows if r.task_type == "pick"]
    assert sorted(r.status for r in picks) == ["executed"] * 5 + ["failed"]
    assert day.monitor.attempts[status.join_task_id] == 1


def test_a_flow_that_differs_from_the_story_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop, "OUT_OF_STOCK", frozenset())  # what the shop's executors read
    console = plain_console()
    assert demo.run_demo(fast=True, console=console) == 1
    text = output(console)
    assert "shop/pick#5: expected failed after 3 attempt(s), got executed after 1" in text
    assert "flow (state, total, ok, failed, pending): ('joined', 6, 5, 1, 0) != " in text


def test_live_view_on_a_terminal() -> None:
    console = terminal_console()
    assert demo.run_demo(fast=True, console=console) == 0
    text = output(console)
    assert "entity status" in text
    assert "lifecycle events and logs" in text
    assert "flow (6 steps)" in text
    assert "warehouse/pick #5" in text
    assert "reports/month_end.done" in text
    assert "Nothing is due any more" in text  # the last frame stays on screen
    assert "Everything ended as the story says." in text


def test_frames_pause_only_on_a_terminal_without_fast() -> None:
    monitor = demo.ShopMonitor(demo.ManualClock())
    assert demo.Screen(terminal_console(), monitor, fast=False).pause == demo.FRAME_PAUSE
    assert demo.Screen(terminal_console(), monitor, fast=True).pause == 0
    assert demo.Screen(plain_console(), monitor, fast=False).pause == 0


def test_library_logs_go_to_the_event_log_and_are_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lib = logging.getLogger("tq_aws")
    before = (lib.level, lib.propagate, list(lib.handlers))
    with caplog.at_level(logging.INFO):
        assert demo.run_demo(fast=True, console=plain_console()) == 0
    assert not [r for r in caplog.records if r.name.startswith("tq_aws")]
    assert (lib.level, lib.propagate, list(lib.handlers)) == before


def test_a_run_that_differs_from_the_story_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(demo.EXPECTED, "bob/charge", ("executed", 1))
    console = plain_console()
    assert demo.run_demo(fast=True, console=console) == 1
    text = output(console)
    assert "The run did not go as the story says:" in text
    assert "bob/charge: expected executed after 1 attempt(s), got executed after 3" in text


def test_cli_demo_fast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--fast"]) == 0
    assert "Everything ended as the story says." in capsys.readouterr().out


def test_a_short_terminal_folds_the_flow_steps_into_one_line() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80, height=24)
    assert demo.run_demo(fast=True, console=console) == 0
    text = output(console)
    assert "warehouse/pick x6" in text  # while the flow runs
    assert "warehouse/pick #6" in text  # the last frame is shown whole
