"""The Lambda runtime's per-key rules on their own (``tq_aws.runtimes.aws_lambda.planning``):
which records a sub-batch holds and what each record is reported as, with no Powertools, no
AWS and no engine. A failed record stops the later records of its key only; other keys go on;
SQS FIFO groups likewise; a poison record never blocks anything; a sub-batch ends where the
engine's grouping by executor could reorder a key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from tq_aws.core.codec import encode_task
from tq_aws.core.task import Task
from tq_aws.errors import CodecError
from tq_aws.ports import Delivery
from tq_aws.runtimes.aws_lambda.planning import (
    SubBatch,
    Verdict,
    plan_sub_batch,
    stop_key,
    verdict,
)
from tq_aws.runtimes.aws_lambda.records import sqs_delivery, sqs_key


@dataclass(frozen=True)
class Rec:
    """A record as the planner sees it: its key, its task type (executor group), or poison."""

    key: str | None
    type: str = "t"
    poison: bool = False


def decode(rec: Rec) -> Delivery:
    delivery = Delivery("q", b"", position(rec), None, None, rec.key, None)
    if rec.poison:
        delivery.error = CodecError("not codec JSON", reason="malformed")
    else:
        delivery.task = Task(id=f"task-{id(rec)}", queue_id="q", type=rec.type)
    return delivery


def key_of(rec: Rec) -> str | None:
    return rec.key


def plan(
    records: Sequence[Rec], start: int = 0, size: int = 100, failed: Collection[str] = ()
) -> SubBatch:
    return plan_sub_batch(records, start, size, set(failed), decode, key_of)


def planned(records: Sequence[Rec], batch: SubBatch) -> list[int]:
    """The indexes of the records in ``batch``, found by the delivery's position."""
    positions = [position(r) for r in records]
    return [positions.index(d.position) for d in batch.deliveries]


def walk(
    records: Sequence[Any],
    size: int,
    not_recorded: Collection[int],
    decode: Any = decode,
    key_of: Any = key_of,
) -> tuple[list[Verdict], list[list[int]]]:
    """Run an event as the processor does, record by record: the first record of a sub-batch
    plans it; a sub-batch holding a record of ``not_recorded`` fails to record; a reported
    record stops its key. Returns each record's verdict and the records of each sub-batch."""
    failed: set[str] = set()
    verdicts: list[Verdict] = []
    batches: list[list[int]] = []
    end, recorded = 0, True
    poison: set[int] = set()
    for index, record in enumerate(records):
        if index == end:
            batch = plan_sub_batch(records, index, size, failed, decode, key_of)
            ran = {d.position for d in batch.deliveries}
            ran_indexes = [i for i in range(index, batch.end) if position(records[i]) in ran]
            if ran_indexes:
                batches.append(ran_indexes)
            end, poison = batch.end, batch.poison
            recorded = not set(ran_indexes) & set(not_recorded)
            if not recorded:
                poison = set()  # not kept either: reported with the rest
        key = key_of(record)
        outcome = verdict(
            index, key, cut_from=None, poison=poison, failed_keys=failed, recorded=recorded
        )
        if outcome is not Verdict.RECORDED:
            stop_key(failed, key)
        verdicts.append(outcome)
    return verdicts, batches


def position(record: Any) -> str:
    """The position ``decode`` (``Rec``) or ``sqs_delivery`` (SQS records) gives a record."""
    return f"pos-{id(record)}" if isinstance(record, Rec) else str(record["messageId"])


R, B, N, K = Verdict.RECORDED, Verdict.BLOCKED, Verdict.NOT_RECORDED, Verdict.HANDED_BACK


# -- which records a sub-batch holds ------------------------------------------------------------


def test_a_sub_batch_is_the_next_consecutive_records_up_to_its_size() -> None:
    records = [Rec(f"k{i}") for i in range(5)]
    first = plan(records, size=3)
    assert planned(records, first) == [0, 1, 2] and first.end == 3 and first.poison == set()
    second = plan(records, start=first.end, size=3)
    assert planned(records, second) == [3, 4] and second.end == 5


def test_the_records_of_a_blocked_key_are_left_out_and_other_keys_go_on() -> None:
    records = [Rec("a"), Rec("b"), Rec("a"), Rec("c"), Rec(None)]
    batch = plan(records, failed={"a"})
    assert planned(records, batch) == [1, 3, 4]
    assert batch.end == 5


def test_left_out_records_do_not_count_against_the_size() -> None:
    records = [Rec("a"), Rec("a"), Rec("b"), Rec("c"), Rec("d")]
    batch = plan(records, size=2, failed={"a"})
    assert planned(records, batch) == [2, 3] and batch.end == 4


def test_a_poison_record_runs_even_in_a_blocked_key() -> None:
    records = [Rec("a", poison=True), Rec("a"), Rec("b")]
    batch = plan(records, failed={"a"})
    assert planned(records, batch) == [0, 2]
    assert batch.poison == {0}


def test_a_sub_batch_ends_where_the_engines_grouping_could_reorder_a_key() -> None:
    # the engine runs g1 (records 0 and 3) before g2 (records 1 and 2): k1's record 3 would run
    # before its record 2, so the sub-batch ends before record 3
    records = [Rec("k1", "g1"), Rec("k2", "g2"), Rec("k1", "g2"), Rec("k1", "g1")]
    batch = plan(records)
    assert planned(records, batch) == [0, 1, 2] and batch.end == 3
    assert planned(records, plan(records, start=3)) == [3]


def test_a_key_moving_to_a_later_group_keeps_its_order_and_the_sub_batch_goes_on() -> None:
    records = [Rec("k1", "g1"), Rec("k2", "g2"), Rec("k1", "g2"), Rec("k3", "g1")]
    batch = plan(records)
    assert planned(records, batch) == [0, 1, 2, 3] and batch.end == 4


def test_records_without_a_key_never_end_a_sub_batch() -> None:
    records = [Rec(None, "g1"), Rec(None, "g2"), Rec(None, "g1")]
    assert plan(records).end == 3


# -- what a record is reported as ---------------------------------------------------------------


def test_the_verdict_rules_in_order() -> None:
    def judge(index: int = 5, key: str | None = "a", **changes: Any) -> Verdict:
        options: dict[str, Any] = {
            "cut_from": None,
            "poison": set(),
            "failed_keys": set(),
            "recorded": True,
        }
        options.update(changes)
        return verdict(index, key, **options)

    assert judge() is R
    assert judge(recorded=False) is N
    assert judge(failed_keys={"a"}) is B
    assert judge(failed_keys={"b"}) is R
    assert judge(key=None, failed_keys={"a"}) is R
    assert judge(poison={5}, failed_keys={"a"}, recorded=False) is R  # kept poison never blocks
    assert judge(cut_from=5, poison={5}) is K
    assert judge(cut_from=6) is R
    assert judge(index=7, cut_from=6, failed_keys={"a"}) is K


def test_a_reported_record_stops_its_key_and_a_record_without_one_stops_nothing() -> None:
    failed: set[str] = set()
    stop_key(failed, None)
    assert failed == set()
    stop_key(failed, "a")
    assert failed == {"a"}


# -- an event, record by record -----------------------------------------------------------------


def test_a_failed_record_stops_the_later_records_of_its_key_only() -> None:
    records = [Rec("a"), Rec("b"), Rec("a"), Rec("b"), Rec("c"), Rec("a")]
    verdicts, batches = walk(records, size=1, not_recorded={0})
    assert verdicts == [N, R, B, R, R, B]
    assert batches == [[0], [1], [3], [4]]  # a's later records never ran


def test_a_sub_batch_not_recorded_stops_each_of_its_keys() -> None:
    records = [Rec("a"), Rec("b"), Rec("c"), Rec("a"), Rec("b"), Rec("c")]
    verdicts, batches = walk(records, size=2, not_recorded={0})
    assert verdicts == [N, N, R, B, B, R]
    assert batches == [[0, 1], [2, 5]]


def test_a_poison_record_behind_a_failed_key_is_not_reported() -> None:
    records = [Rec("a"), Rec("a", poison=True), Rec("a"), Rec("b")]
    verdicts, _ = walk(records, size=1, not_recorded={0})
    assert verdicts == [N, R, B, R]


# -- SQS FIFO groups, through the records module ------------------------------------------------


def sqs_record(i: int, group: str | None, *, body: str | None = None) -> dict[str, Any]:
    task = Task(id=f"t{i}", queue_id="orders", type="ship", partition_key=group)
    record: dict[str, Any] = {
        "eventSource": "aws:sqs",
        "messageId": f"m{i}",
        "body": encode_task(task).decode() if body is None else body,
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders.fifo",
        "attributes": {"MessageGroupId": group} if group else {},
    }
    return record


def test_fifo_groups_a_failed_message_stops_its_group_only() -> None:
    records = [
        sqs_record(0, "g1"),
        sqs_record(1, "g2"),
        sqs_record(2, "g1"),
        sqs_record(3, "g2"),
        sqs_record(4, "g1"),
    ]
    verdicts, batches = walk(records, 1, {0}, decode=sqs_delivery, key_of=sqs_key)
    assert verdicts == [N, R, B, R, B]
    assert batches == [[0], [1], [3]]


def test_standard_queue_messages_have_no_group_and_never_block_each_other() -> None:
    records = [sqs_record(0, None), sqs_record(1, None), sqs_record(2, None)]
    assert [sqs_key(r) for r in records] == [None, None, None]
    verdicts, batches = walk(records, 1, {0}, decode=sqs_delivery, key_of=sqs_key)
    assert verdicts == [N, R, R]
    assert batches == [[0], [1], [2]]


def test_an_undecodable_fifo_message_is_poison_and_does_not_block_its_group() -> None:
    records = [sqs_record(0, "g1"), sqs_record(1, "g1", body="not base64 !"), sqs_record(2, "g1")]
    batch = plan_sub_batch(records, 0, 10, set(), sqs_delivery, sqs_key)
    assert batch.poison == {1} and batch.end == 3
    assert json.loads(batch.deliveries[0].data)["task"]["id"] == "t0"
    verdicts, _ = walk(records, 1, {0}, decode=sqs_delivery, key_of=sqs_key)
    assert verdicts == [N, R, B]


def test_the_rules_load_without_powertools_or_an_aws_sdk() -> None:
    probe = (
        "import sys, tq_aws.runtimes.aws_lambda.planning, tq_aws.runtimes.aws_lambda.records\n"
        "print(','.join(m for m in ('aws_lambda_powertools', 'botocore', 'boto3') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""
