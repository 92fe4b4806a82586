"""``tq-aws worker --local`` in a real process, stopped by a real signal: the first SIGINT or
SIGTERM lets the batch in hand finish and starts no other; a second one exits at once, even
while an executor blocks the event loop."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0
"""Seconds a step may take before the test gives up (a safety net, not a measurement)."""


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    log: Path
    release: Path
    stderr_path: Path

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + LIMIT
        while not check():
            if self.proc.poll() is not None:
                pytest.fail(f"the worker exited before {what}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}:\n{self.stderr()}")
            time.sleep(0.02)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def run(tasks: int, *, block: bool = False) -> Worker:
        log, release = tmp_path / "log", tmp_path / "release"
        stderr_path = tmp_path / "stderr"
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            TQ_TEST_TASKS=str(tasks),
            TQ_TEST_BATCH="2",
            TQ_TEST_LOG=str(log),
            TQ_TEST_RELEASE=str(release),
            TQ_TEST_BLOCK="1" if block else "0",
        )
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tq_aws.cli",
                    "worker",
                    "--local",
                    "--app",
                    "tests.cli.local_app:app",
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        worker = Worker(proc, log, release, stderr_path)
        started.append(worker)
        return worker

    yield run
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=LIMIT)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_worker_between_batches(
    start: Callable[..., Worker], sig: signal.Signals
) -> None:
    worker = start(6)  # three batches of two: t0 t1 | t2 t3 | t4 t5
    worker.wait_for("the first task to start", lambda: "start t0" in worker.lines())

    worker.proc.send_signal(sig)
    worker.wait_for("the signal to be taken", lambda: "stopping after the batch" in worker.stderr())
    worker.release.touch()
    out, _ = worker.proc.communicate(timeout=LIMIT)

    assert worker.proc.returncode == 0, worker.stderr()
    assert worker.lines() == ["start t0", "done t0", "start t1", "done t1"]  # batch 1, whole
    assert f"tq-aws: {sig.name}: stopping after the batch in hand" in worker.stderr()
    assert out.splitlines()[-1] == "tq-aws worker --local: stopped after 1 batch(es)"


def test_local_says_what_it_runs_and_on_what(start: Callable[..., Worker]) -> None:
    worker = start(0)
    assert worker.proc.stdout is not None
    ready, _, _ = select.select([worker.proc.stdout], [], [], LIMIT)
    if not ready:
        worker.proc.kill()
        pytest.fail(f"the worker printed nothing:\n{worker.stderr()}")
    banner = worker.proc.stdout.readline()
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.communicate(timeout=LIMIT)

    assert banner.startswith(
        "tq-aws worker --local: running tests.cli.local_app:app (executors: work/hold) on "
        "the embedded in-memory default (MemoryTransport, MemoryTaskStore, MemoryScheduler;"
    )
    assert "batches of up to 2" in banner
    assert worker.proc.returncode == 0


@pytest.mark.parametrize("block", [False, True], ids=["awaiting", "blocking-the-loop"])
def test_a_second_signal_exits_at_once(start: Callable[..., Worker], block: bool) -> None:
    worker = start(4, block=block)
    worker.wait_for("the first task to start", lambda: "start t0" in worker.lines())

    worker.proc.send_signal(signal.SIGINT)
    worker.wait_for("the first signal to be taken", lambda: "stopping after" in worker.stderr())
    worker.proc.send_signal(signal.SIGINT)  # the task is never released
    worker.proc.communicate(timeout=LIMIT)

    assert worker.proc.returncode == 130
    assert "tq-aws: SIGINT again: stopping at once" in worker.stderr()
    assert worker.lines() == ["start t0"]
