"""Fixtures every test can use; the moto fixtures come from the ``tests.support.aws`` plugin."""

from __future__ import annotations

import pytest

from tests.support.events import EventRecorder
from tq_aws import TaskQueue
from tq_aws.testing import ManualClock

pytest_plugins = ["tests.support.aws"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(clock: ManualClock) -> TaskQueue:
    return TaskQueue(clock=clock, worker_id="w-1")


@pytest.fixture
def events(app: TaskQueue) -> EventRecorder:
    recorder = EventRecorder()
    app.add_listener(recorder)
    return recorder
