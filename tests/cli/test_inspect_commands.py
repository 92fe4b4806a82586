"""``enqueue`` one task from flags, then ``status ENTITY_TYPE ENTITY_ID``, ``flow FLOW_ID``,
``task TASK_ID`` and ``cancel TASK_ID``, as tables and as ``--json``: each on the embedded
default and on moto (``--aws``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.cli.conftest import Where


def enqueue(where: Where, *args: str) -> str:
    result = where.ok("enqueue", *args)
    [task_id] = result.stdout.split()
    return task_id


def a_morning(where: Where) -> dict[str, str]:
    """Mail sent, mail bounced, an order packed by a flow of three picks (ink fails)."""
    ids = {
        "send": enqueue(
            where,
            "-q",
            "mail",
            "-t",
            "send",
            "--payload",
            '{"to": "a@b.c"}',
            "--entity",
            "customer:c-1",
        ),
        "bounce": enqueue(where, "--queue", "mail", "--type", "bounce", "--entity", "customer:c-1"),
        "pack": enqueue(
            where,
            "-q",
            "orders",
            "-t",
            "pack",
            "--payload",
            '{"items": ["tea", "ink", "pen"]}',
            "--entity",
            "customer:c-1",
        ),
    }
    assert where.run() > 0
    return ids


def test_status_of_an_entity_newest_first_as_a_table_and_as_json(where: Where) -> None:
    ids = a_morning(where)

    table = where.ok("status", "customer", "c-1").stdout
    assert "customer c-1: 5 row(s), newest first" in table
    for task_id in ids.values():
        assert task_id in table
    assert "mailbox full <script>alert(1)</script>" in table  # user data shown as text
    assert "flow 3/3" in table  # the flow's row with its progress

    document = where.json("status", "customer", "c-1")  # what the status API answers
    assert set(document) == {"tasks", "flows"}
    tasks = {row["task_id"]: row for row in document["tasks"]}
    assert (tasks[ids["send"]]["status"], tasks[ids["send"]]["result"]) == (
        "executed",
        {"sent_to": "a@b.c"},
    )
    assert (tasks[ids["bounce"]]["status"], tasks[ids["bounce"]]["error"]) == (
        "failed",
        "mailbox full <script>alert(1)</script>",
    )
    [flow] = document["flows"]
    assert (flow["status"], flow["queue_id"], flow["task_type"]) == ("executed", "orders", "packed")
    assert flow["progress"] == {
        "state": "joined",
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "pending": 0,
    }
    times = [row["created_at"] for row in document["tasks"]]
    assert times == sorted(times, reverse=True)

    # the entity status command is also ``status entity``
    assert where.json("status", "entity", "customer", "c-1") == document


def test_an_entity_without_rows_says_so(where: Where) -> None:
    assert where.ok("status", "customer", "nobody").stdout.strip() == (
        "no tasks or flows for customer nobody"
    )
    assert where.json("status", "customer", "nobody")["tasks"] == []


def test_flow_counters_join_and_steps(where: Where) -> None:
    a_morning(where)
    [flow] = where.json("status", "customer", "c-1")["flows"]
    flow_id = flow["flow_id"]

    document = where.json("flow", flow_id, "--steps")
    assert (document["state"], document["total"], document["succeeded"], document["failed"]) == (
        "joined",
        3,
        2,
        1,
    )
    assert (document["pending"], document["join_status"]) == (0, "executed")
    assert [s["status"] for s in document["steps"]] == ["succeeded", "failed", "succeeded"]
    assert document["finished_at"].endswith("Z")

    failed = where.json("flow", flow_id, "--failed")["steps"]
    assert failed == [
        {"step_index": 1, "status": "failed", "result": None, "error": "out of stock: ink"}
    ]

    shown = where.ok("flow", flow_id, "--failed").stdout
    assert f"flow {flow_id}: joined" in shown
    assert "total 3   succeeded 2   failed 1   pending 0" in shown
    assert "3/3 finished" in shown
    assert "out of stock: ink" in shown and '{"picked": "tea"}' not in shown

    missing = where.invoke("flow", "no-such-flow")
    assert (missing.exit_code, missing.stderr.strip()) == (1, "tq-aws: no flow no-such-flow")


def test_task_shows_the_stored_task_with_its_error(where: Where) -> None:
    ids = a_morning(where)

    shown = where.ok("task", ids["bounce"]).stdout
    assert f"task {ids['bounce']}: failed" in shown
    assert "mail/bounce   entity customer c-1" in shown
    assert "last error: mailbox full <script>alert(1)</script>" in shown

    document = where.json("task", ids["bounce"])
    assert (document["id"], document["status"], document["queue_id"]) == (
        ids["bounce"],
        "failed",
        "mail",
    )
    assert document["execution_stats"]["last_error"] == "mailbox full <script>alert(1)</script>"

    unknown = where.invoke("task", "never-stored")
    assert unknown.exit_code == 1
    assert "no stored task never-stored" in unknown.stderr


def test_cancel_a_task_that_has_not_started(where: Where) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    task_id = enqueue(
        where,
        "-q",
        "mail",
        "-t",
        "send",
        "--payload",
        '{"to": "later@b.c"}',
        "--entity",
        "customer:c-2",
        "--execute-at",
        later,
    )
    assert where.json("task", task_id)["status"] == "scheduled"

    assert where.ok("cancel", task_id).stdout.strip() == f"cancelled {task_id}"
    assert where.json("task", task_id)["status"] == "cancelled"
    [row] = where.json("status", "customer", "c-2")["tasks"]
    assert (row["task_id"], row["status"]) == (task_id, "cancelled")

    again = where.invoke("cancel", task_id, "--json")
    assert again.exit_code == 1
    assert again.stdout.strip() == f'{{"task_id": "{task_id}", "cancelled": false}}'
