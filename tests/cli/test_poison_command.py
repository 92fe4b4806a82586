"""``tq-aws poison``: the kept poison records, newest first (within one batch too), on the
embedded default and on moto; ``--limit`` at least 1; ``poison redrive`` after a fix."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.cli.conftest import Where
from tests.support import poison_app
from tq_aws import Entity, Task
from tq_aws.cli import main
from tq_aws.core.codec import encode_task
from tq_aws.core.poison import PoisonRecord

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


def _keep(*records: PoisonRecord) -> None:
    asyncio.run(poison_app.app.poison_store.record(records))


def _record(n: int, data: bytes, *, seen: int | None = None) -> PoisonRecord:
    return PoisonRecord(
        queue_id="tq-tasks",
        position=f"tq-tasks/shardId-000000000000/{n}",
        reason="unknown_version",
        error="record has codec version 9; this release reads version 1",
        data=data,
        seen_at=T0 + timedelta(minutes=n if seen is None else seen),
    )


def keep(where: Where, *records: PoisonRecord) -> None:
    queue = where.app()

    async def go() -> None:
        try:
            await queue.poison_store.record(records)
        finally:
            await queue.aclose()

    asyncio.run(go())


def test_lists_the_kept_records_newest_first(capsys: pytest.CaptureFixture[str]) -> None:
    _keep(_record(1, b'{"v": 9}'), _record(2, b"\xff\xfe binary"))

    assert main(["poison", "--app", "tests.support.poison_app:app", "--limit", "5"]) == 0

    out = capsys.readouterr().out
    assert out.index("shardId-000000000000/2") < out.index("shardId-000000000000/1")
    assert "unknown_version" in out and "codec version 9" in out and "(8 bytes)" in out

    assert main(["poison", "--app", "tests.support.poison_app:app", "--json", "--limit", "1"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    doc = json.loads(line)
    assert doc["position"].endswith("/2")
    assert base64.urlsafe_b64decode(doc["data"]) == b"\xff\xfe binary"
    assert doc["key"] == _record(2, b"").key


def test_an_empty_store_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    poison_app.app.poison_store = type(poison_app.app.poison_store)()
    assert main(["poison", "--app", "tests.support.poison_app:app"]) == 0
    assert capsys.readouterr().out.strip() == "no poison records"


def test_newest_first_within_a_batch_too(where: Where) -> None:
    # one batch (one seen_at) of 12 records, kept in delivery order, and an older one
    keep(where, _record(0, b"old", seen=0))
    keep(where, *(_record(n, b"x", seen=5) for n in range(1, 13)))

    shown = [
        json.loads(line)["position"] for line in where.ok("poison", "--json").stdout.splitlines()
    ]
    assert [p.rsplit("/", 1)[1] for p in shown] == [str(n) for n in range(12, -1, -1)]

    # a limit that cuts the batch shows its newest records, not whichever the store had first
    cut = where.ok("poison", "--json", "--limit", "3").stdout.splitlines()
    assert [json.loads(line)["position"].rsplit("/", 1)[1] for line in cut] == ["12", "11", "10"]

    table = where.ok("poison", "list").stdout
    assert table.index("shardId-000000000000/12") < table.index("shardId-000000000000/2 ")


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_is_at_least_one(where: Where, limit: str) -> None:
    result = where.invoke("poison", "--limit", limit)
    assert result.exit_code == 2
    assert "Invalid value for '--limit'" in result.stderr


def test_redrive_adds_the_tasks_of_records_that_decode_now(where: Where) -> None:
    task = Task(
        id="redriven-1",
        queue_id="mail",
        type="send",
        payload={"to": "fixed@b.c"},
        entity=Entity(type="customer", id="c-9"),
    )
    fixed = _record(1, encode_task(task))  # what the fixed consumer reads in these bytes
    still_bad = _record(2, b"\xff\xfe binary")
    keep(where, fixed, still_bad)

    refused = where.invoke("poison", "redrive")
    assert refused.exit_code == 2
    assert "give record keys, --reason, --source or --since, or --all" in refused.stderr

    assert where.json("poison", "redrive", fixed.key, still_bad.key) == {"added": 1}
    assert where.json("poison", "redrive", "--all") == {"added": 0}  # a redrive adds once
    where.run()
    [row] = where.json("status", "customer", "c-9")["tasks"]
    assert (row["task_id"], row["status"], row["result"]) == (
        "redriven-1",
        "executed",
        {"sent_to": "fixed@b.c"},
    )
    shown = where.ok("poison", "redrive", "--reason", "unknown_version").stdout
    assert shown.strip() == "redrove poison records: 0 task(s) added"
