"""LeaseStore contract: the same assertions over the memory store and the DynamoDB store
(moto), and races of conditional writes on the serialized moto server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.backends.memory.lease_store import MemoryLeaseStore
from tq_aws.core.leases import Lease, ShardSpec
from tq_aws.errors import InvalidSequenceNumberError
from tq_aws.ports import LeaseStore

STREAM = "tq-tasks"
NOW = 1_800_000_000.0
TTL = 10.0


async def dynamo_store(settings: AwsSettings) -> DynamoLeaseStore:
    table = unique("tq-leases")
    await asyncio.to_thread(ensure_table, table, settings)
    return DynamoLeaseStore(table, settings)


@pytest.fixture(params=["memory", "dynamodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LeaseStore]:
    if request.param == "memory":
        yield MemoryLeaseStore()
    else:
        yield await dynamo_store(request.getfixturevalue("aws_settings"))


async def fresh(store: LeaseStore, shard: str = "shard-0", **kw: object) -> Lease:
    await store.create(STREAM, [ShardSpec(shard, **kw)])  # type: ignore[arg-type]
    return (await store.get_all(STREAM, [shard]))[shard]


async def taken(store: LeaseStore, owner: str = "w1", shard: str = "shard-0") -> Lease:
    lease = await store.take(await fresh(store, shard), owner, now=NOW, lease_seconds=TTL)
    assert lease is not None
    return lease


# -- the store ------------------------------------------------------------------------------


async def test_a_lease_is_created_once_free_with_its_parents(store: LeaseStore) -> None:
    specs = [ShardSpec("shard-2", ("shard-0", "shard-1")), ShardSpec("shard-0")]
    assert await store.create(STREAM, specs) == [True, True]
    assert await store.create(STREAM, specs) == [False, False]
    leases = await store.get_all(STREAM, ["shard-0", "shard-2", "shard-9"])
    assert sorted(leases) == ["shard-0", "shard-2"]
    child = leases["shard-2"]
    assert child == Lease(STREAM, "shard-2", parents=("shard-0", "shard-1"))
    assert child.takeable(NOW) and not child.held(NOW)
    assert await store.get_all("other-stream", ["shard-0"]) == {}


async def test_take_gives_the_lease_to_one_worker_until_it_expires(store: LeaseStore) -> None:
    seen = await fresh(store)
    first = await store.take(seen, "w1", now=NOW, lease_seconds=TTL)
    assert first is not None
    assert (first.owner, first.counter, first.expiry) == ("w1", 1, NOW + TTL)
    # the counter seen before is stale, and the lease is held anyway
    assert await store.take(seen, "w2", now=NOW + 1, lease_seconds=TTL) is None
    assert await store.take(first, "w2", now=NOW + TTL - 1, lease_seconds=TTL) is None
    later = await store.take(first, "w2", now=NOW + TTL + 1, lease_seconds=TTL)
    assert later is not None and (later.owner, later.counter) == ("w2", 2)
    assert (await store.get_all(STREAM, ["shard-0"]))["shard-0"] == later


async def test_renewal_bumps_the_counter_and_refuses_an_overtaken_owner(
    store: LeaseStore,
) -> None:
    mine = await taken(store)
    renewed = await store.renew(mine, now=NOW + 5, lease_seconds=TTL)
    assert renewed is not None
    assert (renewed.counter, renewed.expiry) == (2, NOW + 5 + TTL)
    thief = await store.take(renewed, "w2", now=NOW + 100, lease_seconds=TTL)
    assert thief is not None
    assert await store.renew(renewed, now=NOW + 101, lease_seconds=TTL) is None
    assert (await store.get_all(STREAM, ["shard-0"]))["shard-0"].owner == "w2"


async def test_a_repeated_take_or_renewal_is_not_mistaken_for_a_lost_lease(
    store: LeaseStore,
) -> None:
    """A request retried after its answer was lost fails its condition; the item shows it was
    ours, so the worker keeps the lease."""
    seen = await fresh(store)
    first = await store.take(seen, "w1", now=NOW, lease_seconds=TTL)
    again = await store.take(seen, "w1", now=NOW, lease_seconds=TTL)
    assert first is not None and again == first
    renewed = await store.renew(first, now=NOW + 1, lease_seconds=TTL)
    assert renewed is not None
    assert await store.renew(first, now=NOW + 1, lease_seconds=TTL) == renewed
    assert await store.take(seen, "w2", now=NOW, lease_seconds=TTL) is None


async def test_checkpoints_are_fenced_by_the_lease_counter(store: LeaseStore) -> None:
    old = await taken(store, "w1")
    moved = await store.checkpoint(old, "5")
    assert moved is not None and moved.checkpoint == "5"
    new = await store.take(moved, "w2", now=NOW + TTL + 1, lease_seconds=TTL)
    assert new is not None and new.checkpoint == "5"
    # the old owner finishes its batch late: its checkpoint is refused
    assert await store.checkpoint(moved, "9") is None
    assert (await store.get_all(STREAM, ["shard-0"]))["shard-0"].checkpoint == "5"
    # a snapshot from before the owner's own renewal is stale too
    renewed = await store.renew(new, now=NOW + TTL + 2, lease_seconds=TTL)
    assert renewed is not None
    assert await store.checkpoint(new, "7") is None
    assert (await store.checkpoint(renewed, "7")).checkpoint == "7"  # type: ignore[union-attr]


async def test_checkpoints_only_move_forward_compared_as_numbers(store: LeaseStore) -> None:
    lease = await taken(store)
    for sequence in ("9", "10", "8", "10"):
        moved = await store.checkpoint(lease, sequence)
        assert moved is not None, sequence  # going back is not a lost lease
        lease = moved
    assert lease.checkpoint == "10"
    big = "49590338271490256608559692538361571095921575989136588898"  # 56 digits, as on AWS
    lease = await store.checkpoint(lease, big)  # type: ignore[assignment]
    assert lease is not None and lease.checkpoint == big
    bigger = str(int(big) + 1)
    lease = await store.checkpoint(lease, bigger)  # type: ignore[assignment]
    lease = await store.checkpoint(lease, big)  # type: ignore[assignment]
    assert (await store.get_all(STREAM, ["shard-0"]))["shard-0"].checkpoint == bigger


@pytest.mark.parametrize("bad", ["", "12a", "-1", "1" * 130])
async def test_a_checkpoint_that_is_not_a_sequence_number_names_the_field(
    store: LeaseStore, bad: str
) -> None:
    lease = await taken(store)
    with pytest.raises(InvalidSequenceNumberError, match="checkpoint="):
        await store.checkpoint(lease, bad)


async def test_release_frees_the_lease_for_anyone_and_only_the_owner_releases(
    store: LeaseStore,
) -> None:
    lease = await taken(store, "w1")
    stale = Lease(STREAM, "shard-0", owner="w2", counter=lease.counter)
    assert not await store.release(stale)
    assert await store.release(lease)
    current = (await store.get_all(STREAM, ["shard-0"]))["shard-0"]
    assert (current.owner, current.expiry) == (None, 0.0)
    assert not await store.renew(lease, now=NOW, lease_seconds=TTL)
    other = await store.take(current, "w2", now=NOW, lease_seconds=TTL)
    assert other is not None and other.owner == "w2"


async def test_a_finished_shard_is_never_taken_again(store: LeaseStore) -> None:
    lease = await taken(store)
    lease = await store.checkpoint(lease, "42")  # type: ignore[assignment]
    assert await store.finish(lease)
    assert await store.finish(lease)  # repeated: still finished
    current = (await store.get_all(STREAM, ["shard-0"]))["shard-0"]
    assert current.finished and current.owner is None and current.checkpoint == "42"
    assert not current.takeable(NOW)
    assert await store.take(current, "w2", now=NOW + 1000, lease_seconds=TTL) is None


async def test_a_handover_request_reaches_the_owner_at_its_next_renewal(
    store: LeaseStore,
) -> None:
    lease = await taken(store, "w1")
    assert not await store.request_handover(lease, "w2", now=NOW + TTL + 1)  # expired: take it
    assert await store.request_handover(lease, "w2", now=NOW + 1)
    assert not await store.request_handover(lease, "w3", now=NOW + 1)  # one at a time
    renewed = await store.renew(lease, now=NOW + 2, lease_seconds=TTL)
    assert renewed is not None and renewed.handover_to == "w2"
    assert await store.release(renewed)
    free = (await store.get_all(STREAM, ["shard-0"]))["shard-0"]
    assert free.handover_to is None and free.owner is None
    assert not await store.request_handover(free, "w3", now=NOW + 3)  # free: nobody to ask
    now_w2 = await store.take(free, "w2", now=NOW + 3, lease_seconds=TTL)
    assert now_w2 is not None and now_w2.handover_to is None


async def test_a_handover_gives_the_lease_to_the_requester_without_freeing_it(
    store: LeaseStore,
) -> None:
    lease = await taken(store, "w1")
    lease = await store.checkpoint(lease, "3")  # type: ignore[assignment]
    assert await store.hand_over(lease, now=NOW + 1, lease_seconds=TTL) is None  # not asked
    assert await store.request_handover(lease, "w2", now=NOW + 1)
    asked = await store.renew(lease, now=NOW + 2, lease_seconds=TTL)
    assert asked is not None and asked.handover_to == "w2"
    assert await store.hand_over(lease, now=NOW + 2, lease_seconds=TTL) is None  # stale counter
    given = await store.hand_over(asked, now=NOW + 3, lease_seconds=TTL)
    assert given is not None
    assert (given.owner, given.counter, given.expiry) == ("w2", asked.counter + 1, NOW + 3 + TTL)
    assert (given.handover_to, given.checkpoint) == (None, "3")
    assert await store.hand_over(asked, now=NOW + 3, lease_seconds=TTL) == given  # repeated
    assert await store.renew(asked, now=NOW + 4, lease_seconds=TTL) is None  # w1 lost it
    assert await store.checkpoint(asked, "4") is None
    assert await store.renew(given, now=NOW + 4, lease_seconds=TTL) is not None


# -- races (the serialized moto server makes conditional writes atomic) ------------------------


async def test_racing_takers_of_one_lease_have_exactly_one_winner(
    serial_aws_settings: AwsSettings,
) -> None:
    store = await dynamo_store(serial_aws_settings)
    for shard in ("free", "expired"):
        seen = await fresh(store, shard)
        if shard == "expired":
            owned = await store.take(seen, "dead", now=NOW - 100, lease_seconds=TTL)
            assert owned is not None
            seen = owned
        results = await asyncio.gather(
            *(store.take(seen, f"w{i}", now=NOW, lease_seconds=TTL) for i in range(8))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, shard
        current = (await store.get_all(STREAM, [shard]))[shard]
        assert current.owner == winners[0].owner


async def test_an_owner_renewing_and_takers_of_its_expired_lease_have_one_winner(
    serial_aws_settings: AwsSettings,
) -> None:
    store = await dynamo_store(serial_aws_settings)
    late = await taken(store, "slow")
    now = NOW + TTL + 1  # the owner renews just too late
    results = await asyncio.gather(
        store.renew(late, now=now, lease_seconds=TTL),
        *(store.take(late, f"w{i}", now=now, lease_seconds=TTL) for i in range(6)),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    current = (await store.get_all(STREAM, ["shard-0"]))["shard-0"]
    assert (current.owner, current.counter) == (winners[0].owner, late.counter + 1)


async def test_racing_handover_requests_and_checkpoints(
    serial_aws_settings: AwsSettings,
) -> None:
    store = await dynamo_store(serial_aws_settings)
    lease = await taken(store)
    asked = await asyncio.gather(
        *(store.request_handover(lease, f"w{i}", now=NOW) for i in range(6))
    )
    assert asked.count(True) == 1
    sequences = [str(n) for n in range(1, 25)]
    random.Random(7).shuffle(sequences)
    results = await asyncio.gather(*(store.checkpoint(lease, s) for s in sequences))
    assert all(r is not None for r in results)
    assert (await store.get_all(STREAM, ["shard-0"]))["shard-0"].checkpoint == "24"
