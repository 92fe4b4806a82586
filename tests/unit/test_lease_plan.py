"""The balancing plan of shard leases (``plan_round``) and the padded sequence numbers of
checkpoints: pure, no store."""

from __future__ import annotations

from tq_aws.core.leases import Lease, pad_sequence, plan_round

STREAM = "tq-tasks"
NOW = 1_800_000_000.0
TTL = 10.0


def held_by(owner: str | None, shard: str, *, expiry: float = NOW + TTL, **kw: object) -> Lease:
    return Lease(STREAM, shard, owner=owner, counter=1, expiry=expiry, **kw)  # type: ignore[arg-type]


def table(*leases: Lease) -> dict[str, Lease]:
    return {lease.shard_id: lease for lease in leases}


def test_alone_a_worker_takes_every_free_shard() -> None:
    leases = table(*(held_by(None, f"s{i}", expiry=0) for i in range(4)))
    plan = plan_round(leases, "a", NOW, held=0)
    assert (plan.share, plan.live_workers) == (4, 1)
    assert [lease.shard_id for lease in plan.take] == ["s0", "s1", "s2", "s3"]


def test_a_new_worker_asks_the_most_loaded_owner_for_one_lease_per_round() -> None:
    leases = table(*(held_by("a", f"s{i}") for i in range(4)))
    plan = plan_round(leases, "b", NOW, held=0)
    assert (plan.share, plan.live_workers, plan.take) == (2, 2, [])
    assert plan.handover is not None and plan.handover.owner == "a"
    # with a request pending it asks for the second lease, not the same one again
    leases["s3"] = held_by("a", "s3", handover_to="b")
    second = plan_round(leases, "b", NOW, held=0, requested=1)
    assert second.handover is not None and second.handover.shard_id == "s2"
    # at its share it asks nothing
    balanced = table(held_by("a", "s0"), held_by("a", "s1"), held_by("b", "s2"), held_by("b", "s3"))
    assert plan_round(balanced, "b", NOW, held=2).handover is None
    assert plan_round(balanced, "a", NOW, held=2).handover is None


def test_no_lease_goes_back_and_forth_between_two_workers() -> None:
    leases = table(
        *(held_by("a", f"s{i}") for i in range(3)), held_by("b", "s3"), held_by("b", "s4")
    )
    for me, held in (("a", 3), ("b", 2)):
        plan = plan_round(leases, me, NOW, held=held)
        assert plan.share == 3 and plan.take == [] and plan.handover is None


def test_a_third_worker_takes_one_from_the_most_loaded() -> None:
    leases = table(held_by("a", "s0"), held_by("a", "s1"), held_by("b", "s2"), held_by("b", "s3"))
    plan = plan_round(leases, "c", NOW, held=0)
    assert plan.share == 2 and plan.handover is not None and plan.handover.owner == "b"
    after = table(held_by("a", "s0"), held_by("a", "s1"), held_by("b", "s2"), held_by("c", "s3"))
    assert plan_round(after, "b", NOW, held=1).handover is None  # a has only one more


def test_a_dead_workers_expired_leases_are_taken_and_it_no_longer_counts() -> None:
    leases = table(
        held_by("dead", "s0", expiry=NOW - 1),
        held_by("dead", "s1", expiry=NOW - 1),
        held_by("b", "s2"),
        held_by("b", "s3"),
    )
    plan = plan_round(leases, "b", NOW, held=2)
    assert (plan.share, plan.live_workers) == (4, 1)
    assert [lease.shard_id for lease in plan.take] == ["s0", "s1"]


def test_children_wait_for_every_parent_to_finish() -> None:
    parent = held_by("a", "p", checkpoint="7")
    children = [held_by(None, f"c{i}", expiry=0, parents=("p", "q")) for i in range(2)]
    leases = table(parent, *children)  # "q" is not listed any more: read long ago
    plan = plan_round(leases, "b", NOW, held=0)
    assert plan.take == [] and plan.share == 1
    leases["p"] = Lease(STREAM, "p", finished=True, checkpoint="9")
    plan = plan_round(leases, "b", NOW, held=0)
    assert sorted(lease.shard_id for lease in plan.take) == ["c0", "c1"]


def test_a_worker_waiting_for_a_handover_counts_as_live() -> None:
    leases = table(*(held_by("a", f"s{i}") for i in range(3)), held_by("a", "s3", handover_to="b"))
    plan = plan_round(leases, "c", NOW, held=0)
    assert plan.live_workers == 3 and plan.share == 2


def test_padded_sequence_numbers_sort_as_numbers() -> None:
    numbers = ["1", "9", "10", "100", "49590338271490256608559692538361571095921575989136588898"]
    assert sorted(numbers, key=pad_sequence) == sorted(numbers, key=int)
