"""``tq-aws poison``: the kept poison records, newest first."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import poison_app
from tq_aws.cli import main
from tq_aws.core.poison import PoisonRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _keep(*records: PoisonRecord) -> None:
    asyncio.run(poison_app.app.poison_store.record(records))


def _record(n: int, data: bytes) -> PoisonRecord:
    return PoisonRecord(
        queue_id="tq-tasks",
        position=f"tq-tasks/shardId-000000000000/{n}",
        reason="unknown_version",
        error="record has codec version 9; this release reads version 1",
        data=data,
        seen_at=T0 + timedelta(minutes=n),
    )


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


def test_an_empty_store_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    poison_app.app.poison_store = type(poison_app.app.poison_store)()
    assert main(["poison", "--app", "tests.support.poison_app:app"]) == 0
    assert capsys.readouterr().out.strip() == "no poison records"
