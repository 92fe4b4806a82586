"""Makes ``aggregates.json``: aggregated records made by ``aws-kinesis-agg`` (its
``RecordAggregator``), which the KPL decoder is tested against (``tests/runtimes/test_kpl.py``).

Not run by the tests (the library is not a dependency); run it again in a throwaway venv with
``pip install aws-kinesis-agg six`` and ``python make_aggregates.py > aggregates.json``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator  # type: ignore[import-not-found]


def task(i: int, key: str, n: int) -> bytes:
    doc = {
        "v": 1,
        "task": {
            "id": f"kpl-{i}",
            "type": "step",
            "queue_id": "q",
            "payload": {"key": key, "n": n},
            "partition_key": key,
            "created_at": "2026-01-01T00:00:00Z",
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def make(name: str, users: list[tuple[str, bytes, str | None]]) -> dict[str, Any]:
    agg = RecordAggregator()
    for pk, data, ehk in users:
        assert agg.add_user_record(pk, data, ehk) is None
    pk, ehk, data = agg.clear_and_get().get_contents()
    return {
        "name": name,
        "partition_key": pk,
        "explicit_hash_key": ehk,
        "data": base64.b64encode(data).decode(),
        "user_records": [
            {"partition_key": p, "explicit_hash_key": e, "data": base64.b64encode(d).decode()}
            for p, d, e in users
        ],
    }


def main() -> None:
    vectors = [
        make("one_task", [("a", task(1, "a", 0), None)]),
        make(
            "three_tasks_two_keys",
            [
                ("a", task(2, "a", 0), None),
                ("b", task(3, "b", 0), None),
                ("a", task(4, "a", 1), None),
            ],
        ),
        make(
            "explicit_hash_keys",
            [
                ("c", task(5, "c", 0), "1" * 38),
                ("d", task(6, "d", 0), "2" * 38),
                ("c", task(7, "c", 1), None),
            ],
        ),
        make(
            "a_foreign_user_record",
            [
                ("e", task(8, "e", 0), None),
                ("e", b"not a task record", None),
                ("e", task(9, "e", 1), None),
            ],
        ),
        make(
            "many_small",
            [(f"k{i % 7}", task(100 + i, f"k{i % 7}", i // 7), None) for i in range(60)],
        ),
    ]
    made_by = "aws-kinesis-agg 1.2.3 RecordAggregator (protobuf 7.36.2)"
    print(json.dumps({"made_by": made_by, "vectors": vectors}, indent=1))


if __name__ == "__main__":
    main()
