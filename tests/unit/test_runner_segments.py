"""How the runner splits a batch: grouped by executor, never reordering a partition key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tq_aws import Task
from tq_aws.core.runner import _segments

task_specs = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from(["k1", "k2", None])), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(task_specs)
def test_running_segments_group_by_group_keeps_every_key_in_delivery_order(
    specs: list[tuple[str, str | None]],
) -> None:
    tasks = [
        Task(id=f"t{i:02d}", type=type_, queue_id="q", partition_key=key)
        for i, (type_, key) in enumerate(specs)
    ]

    segments = _segments(tasks)
    run_order = [t for groups in segments for group in groups.values() for t in group]

    assert sorted(t.id or "" for t in run_order) == [t.id for t in tasks]  # each task once
    assert all(group for groups in segments for group in groups.values())  # no empty group
    for key in {t.partition_key or t.id for t in tasks}:
        ran = [t.id for t in run_order if (t.partition_key or t.id) == key]
        assert ran == sorted(ran)
    for groups in segments:  # within a segment, groups keep their order of first appearance
        firsts = [min(t.id or "" for t in group) for group in groups.values()]
        assert firsts == sorted(firsts)


def test_one_executor_is_one_segment_whatever_the_keys() -> None:
    tasks = [Task(id=f"t{i}", type="a", queue_id="q", partition_key="k") for i in range(5)]

    assert _segments(tasks) == [{("q", "a"): tasks}]


def test_a_key_changing_executor_starts_a_segment() -> None:
    x1, y, x2 = (
        Task(id=f"t{i}", type=t, queue_id="q", partition_key="k") for i, t in enumerate("xyx")
    )

    assert _segments([x1, y, x2]) == [{("q", "x"): [x1]}, {("q", "y"): [y]}, {("q", "x"): [x2]}]
