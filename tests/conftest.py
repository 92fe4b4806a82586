from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _support import EventRecorder

from tq_aws import TaskQueue
from tq_aws.testing import ManualClock


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
