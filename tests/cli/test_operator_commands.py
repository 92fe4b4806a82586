"""The operator's commands: ``retry TASK_ID`` (a failed task's next attempt), ``retry --failed``
(in bulk, by filter), on the embedded default and on moto; a retry sent twice starts one
attempt."""

from __future__ import annotations

import logging

import pytest

from tests.cli.conftest import Where


def failed_mail(where: Where, kind: str, customer: str) -> str:
    result = where.ok("enqueue", "-q", "mail", "-t", kind, "--entity", f"customer:{customer}")
    where.run()
    [task_id] = result.stdout.split()
    assert where.json("task", task_id)["status"] == "failed"
    return task_id


def test_retry_runs_a_failed_task_again(where: Where, caplog: pytest.LogCaptureFixture) -> None:
    task_id = failed_mail(where, "greylisted", "c-1")

    with caplog.at_level(logging.INFO, logger="tq_aws.engine.operator"):
        shown = where.ok("retry", task_id, "--actor", "ops:alice").stdout
    assert shown.strip() == f"retried {task_id}: attempt 2 is on its way"
    assert any(
        "operator action retry by ops:alice on " + task_id in r.getMessage() for r in caplog.records
    )
    where.run()
    document = where.json("task", task_id)
    assert (document["status"], document["execution_result"]) == ("executed", {"attempt": 2})
    [row] = where.json("status", "customer", "c-1")["tasks"]
    assert (row["task_id"], row["status"]) == (task_id, "executed")

    again = where.invoke("retry", task_id)
    assert again.exit_code == 1
    assert f"{task_id} was not retried: only a stored task that failed can be" in again.stderr
    assert "(this one is executed, attempt 2)" in again.stderr


def test_a_retry_sent_twice_starts_one_attempt(where: Where) -> None:
    task_id = failed_mail(where, "bounce", "c-2")

    assert where.json("retry", task_id, "--failed-attempt", "0") == {
        "task_id": task_id,
        "retried": True,
    }
    replay = where.invoke("retry", task_id, "--failed-attempt", "0", "--json")
    assert (replay.exit_code, replay.stdout.strip()) == (
        1,
        f'{{"task_id": "{task_id}", "retried": false}}',
    )
    where.run()
    document = where.json("task", task_id)
    assert (document["status"], document["execution_stats"]["retry_count"]) == ("failed", 1)

    unknown = where.invoke("retry", "never-stored")
    assert unknown.exit_code == 1
    assert "(this one is not stored)" in unknown.stderr


def test_retry_failed_in_bulk_by_type(where: Where) -> None:
    grey = [failed_mail(where, "greylisted", f"g-{n}") for n in range(3)]
    bounced = failed_mail(where, "bounce", "b-1")

    assert where.ok("retry", "--failed", "--type", "greylisted").stdout.strip() == (
        "retried 3 failed task(s)"
    )
    where.run()
    assert [where.json("task", t)["status"] for t in grey] == ["executed"] * 3
    assert where.json("task", bounced)["status"] == "failed"
    assert where.json(
        "retry", "--failed", "--queue", "mail", "--since", "2000-01-01T00:00:00Z"
    ) == {"retried": 1}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "retry: give a TASK_ID, or --failed (with --type, --queue, --since) for many"),
        (["t-1", "--failed"], "retry: give a TASK_ID, or --failed"),
        (
            ["t-1", "--type", "send"],
            "retry: --type, --queue and --since choose tasks with --failed",
        ),
        (["--failed", "--since", "yesterday"], "--since 'yesterday': not an ISO-8601 time"),
        (["--failed", "--since", "2026-03-01T12:00:00"], "give the UTC offset"),
    ],
)
def test_retry_refuses_what_it_cannot_mean(on_memory: Where, args: list[str], says: str) -> None:
    result = on_memory.invoke("retry", *args)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert says in line
