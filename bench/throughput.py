"""Embedded throughput: N no-op tasks added, run and recorded, tq-aws against Dramatiq.

Both sides run in this process, one after the other, alternating, after a warm-up:

* tq-aws: a fresh ``TaskQueue`` on its in-memory backends and the real clock. Timed: building
  the N ``Task`` objects, one ``add_tasks`` call (every record is JSON-encoded onto the memory
  transport), and ``run_until_idle`` (every record is decoded, run and post-processed in
  batches of ``--batch-size``). Afterwards ``app.stats.executed`` must equal N.
* Dramatiq: a fresh ``StubBroker`` with its default middleware and an actor whose body only
  counts the call. Timed: N ``actor.send(i)`` calls, ``Worker.start``, ``broker.join`` and
  ``worker.join``. Afterwards the count must equal N and nothing may be dead-lettered. The
  worker is built before the clock starts and stopped after it stops.

Pairs (each tq-aws row is compared with the Dramatiq row named in "baseline"):

* ``plain``: no persistence on either side.
* ``recorded``: tq-aws tasks with ``force_store=True`` (a durable record in the memory task
  store from add to ``executed``) against Dramatiq with the ``Results`` middleware, the
  ``StubBackend`` and ``store_results=True`` (every result written to the backend).
* ``batch``: a tq-aws ``batch_executor`` against the plain Dramatiq baseline.

Each round (``--repeats``, default 5) runs every case once, the two sides of a pair one after
the other, every other round in reverse order. A pair is judged on the median of its rounds'
ratios (``bench._rounds``); the table shows that median, the CPU-time ratio (median of the
rounds' ``time.process_time`` ratios: every thread of the process, which moves much less than
wall time when other processes share the machine), the spread of the rounds' ratios and the
best run of each side. Target: tq-aws at least 5x Dramatiq on the plain pair.

Run: ``python -m bench.throughput`` (``--quick``, ``--n``, ``--repeats``, ``--threads``,
``--batch-size``, ``--profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.results import Results
from dramatiq.results.backends import StubBackend

from bench._rounds import MIN_ROUNDS, Paired, Timing, describe_machine, ratio_row, report
from tq_aws import Actions, Task, TaskQueue, TaskStatus

QUEUE = "bench"
TARGET_RATIO = 5.0
DEFAULT_N = 20_000
QUICK_N = 2_000
WARMUP_N = 1_000


class BenchError(RuntimeError):
    """A measured run did not do the work it was timed for."""


class _Clock:
    """Wall and CPU time since it was made."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> Timing:
        return Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


# -- tq-aws ---------------------------------------------------------------------------------


def _tq_app(kind: str, batch_size: int) -> TaskQueue:
    app = TaskQueue(batch_size=batch_size)
    if kind == "batch":

        @app.batch_executor(QUEUE, "noop")
        async def noop_batch(tasks: list[Task], actions: Actions) -> None:
            for task in tasks:
                actions.success(task)

    else:

        @app.executor(QUEUE, "noop")
        async def noop(task: Task, actions: Actions) -> None:
            actions.success(task)

    return app


async def _tq_timed(app: TaskQueue, n: int, force_store: bool) -> tuple[Timing, list[str]]:
    # As a producer would: build the tasks, add them, keep only the ids (a list the caller holds
    # on to would be scanned by every garbage collection of the run).
    clock = _Clock()
    ids = await app.add_tasks(
        [
            Task(type="noop", queue_id=QUEUE, payload={"i": i}, force_store=force_store)
            for i in range(n)
        ]
    )
    await app.run_until_idle()
    return clock.read(), ids


async def _tq_check(app: TaskQueue, n: int, ids: list[str], recorded: bool) -> None:
    if app.stats.executed != n or app.stats.failed or app.stats.ignored:
        raise BenchError(
            f"tq-aws executed {app.stats.executed} of {n} tasks "
            f"(failed {app.stats.failed}, ignored {app.stats.ignored})"
        )
    if recorded:
        stored = len(app.task_store) if isinstance(app.task_store, Sized) else n
        if stored != n:
            raise BenchError(f"tq-aws stored {stored} of {n} task records")
        for task_id in (ids[0], ids[-1]):
            task = await app.get_task(task_id)
            if task is None or task.status is not TaskStatus.EXECUTED:
                raise BenchError(f"tq-aws record of {task_id} is {task and task.status}")


def run_tq(kind: str, n: int, batch_size: int) -> Timing:
    """Time for tq-aws to add, run and record ``n`` no-op tasks (``plain``, ``recorded``,
    ``batch``)."""
    recorded = kind == "recorded"
    app = _tq_app(kind, batch_size)

    async def go() -> Timing:
        gc.collect()
        timing, ids = await _tq_timed(app, n, recorded)
        await _tq_check(app, n, ids, recorded)
        return timing

    return asyncio.run(go())


# -- Dramatiq -------------------------------------------------------------------------------


def run_dramatiq(kind: str, n: int, threads: int) -> Timing:
    """Time for Dramatiq's ``StubBroker`` + ``Worker`` to send and run ``n`` no-op messages
    (``plain``, or ``recorded`` with results stored in the ``StubBackend``)."""
    recorded = kind == "recorded"
    broker = StubBroker()
    backend: StubBackend | None = None
    if recorded:
        backend = StubBackend()
        backend.results = {}  # the class attribute is shared by every StubBackend
        broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call]
    done = itertools.count()

    def noop(i: int) -> None:
        next(done)

    options: dict[str, Any] = {"store_results": True} if recorded else {}
    actor = dramatiq.actor(broker=broker, actor_name="noop", queue_name=QUEUE, **options)(noop)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    gc.collect()
    try:
        clock = _Clock()
        first = last = actor.send(0)
        for i in range(1, n):
            last = actor.send(i)
        worker.start()
        broker.join(QUEUE)
        worker.join()
        timing = clock.read()
    finally:
        worker.stop()
        broker.close()
    ran = next(done)
    if ran != n or broker.dead_letters:
        raise BenchError(f"Dramatiq ran {ran} of {n} messages, {len(broker.dead_letters)} dead")
    if backend is not None:
        if len(backend.results) != n:
            raise BenchError(f"Dramatiq stored {len(backend.results)} of {n} results")
        for message in (first, last):
            message.get_result(backend=backend)  # raises ResultMissing if it was not stored
    return timing


# -- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class Case:
    """One side of one pair, with its timings."""

    name: str
    run: Callable[[int], Timing]
    timings: list[Timing] = field(default_factory=list)

    def best(self) -> float:
        return min(t.wall for t in self.timings)

    def median(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    def best_cpu(self) -> float:
        return min(t.cpu for t in self.timings)


@dataclass(frozen=True, slots=True)
class Pair:
    name: str
    tq: str
    baseline: str


PAIRS = (
    Pair("plain", "tq plain", "dramatiq plain"),
    Pair("recorded", "tq recorded", "dramatiq recorded"),
    Pair("batch", "tq batch", "dramatiq plain"),
)


def _cases(batch_size: int, threads: int) -> list[Case]:
    # Listed in the order they run in a round: the two sides of a pair run one after the other.
    return [
        Case("tq plain", lambda n: run_tq("plain", n, batch_size)),
        Case("dramatiq plain", lambda n: run_dramatiq("plain", n, threads)),
        Case("tq recorded", lambda n: run_tq("recorded", n, batch_size)),
        Case("dramatiq recorded", lambda n: run_dramatiq("recorded", n, threads)),
        Case("tq batch", lambda n: run_tq("batch", n, batch_size)),
    ]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def pair_rounds(tq: Case, base: Case) -> Paired:
    """The rounds of one pair: ``tq.timings[i]`` and ``base.timings[i]`` ran in round ``i``."""
    paired = Paired()
    for t, b in zip(tq.timings, base.timings, strict=True):
        paired.add(t, b)
    return paired


def render(n: int, cases: dict[str, Case]) -> str:
    """The result table: per pair, the median of the rounds' speed ratios (baseline time /
    tq-aws time), its CPU-time ratio and spread, and both sides' best run."""
    header = (
        f"{'pair':<9} {'N':>7}  {'median':>6} {'cpu':>6} {'spread':>11}  {'tq-aws/s':>9}  "
        f"{'baseline':<17} {'tasks/s':>8}"
    )
    lines = [header, "-" * len(header)]
    for pair in PAIRS:
        tq, base = cases[pair.tq], cases[pair.baseline]
        paired = pair_rounds(tq, base)
        low, high = paired.speedup_spread()
        lines.append(
            f"{pair.name:<9} {n:>7}  {paired.speedup():>5.2f}x {paired.cpu_speedup():>5.2f}x "
            f"{low:>5.2f}-{high:.2f}x  {_rate(n, tq.best()):>9}  "
            f"{pair.baseline:<17} {_rate(n, base.best()):>8}"
        )
    lines.append("  (median and spread of the rounds' speed ratios; tasks/s of the best runs)")
    lines.append("")
    lines.append("every run, tasks/s:")
    for case in cases.values():
        runs = " ".join(f"{_rate(n, t.wall):>8}" for t in case.timings)
        lines.append(f"  {case.name:<17} {runs}")
    return "\n".join(lines)


def profile_tq(kind: str, n: int, batch_size: int, top: int = 25) -> str:
    """cProfile of one tq-aws run, top functions by own time and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_tq(kind, n, batch_size)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Embedded throughput of tq-aws against Dramatiq's StubBroker + Worker.",
    )
    parser.add_argument("--n", type=int, default=None, help=f"tasks per run (default {DEFAULT_N})")
    parser.add_argument(
        "--quick", action="store_true", help=f"N={QUICK_N} and 2 repeats: a smoke run"
    )
    parser.add_argument("--repeats", type=int, default=None, help=f"rounds (default {MIN_ROUNDS})")
    parser.add_argument(
        "--threads",
        type=int,
        default=8,
        help="Dramatiq worker threads (default 8, Dramatiq's own default)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="tq-aws TaskQueue batch_size (default 100)"
    )
    parser.add_argument(
        "--profile",
        choices=("plain", "recorded", "batch"),
        default=None,
        help="after the table, print a cProfile of one tq-aws run of this kind",
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = QUICK_N if args.quick else DEFAULT_N
    if args.repeats is None:
        args.repeats = 2 if args.quick else MIN_ROUNDS
    if args.n < 1 or args.repeats < 1 or args.threads < 1 or args.batch_size < 1:
        parser.error("--n, --repeats, --threads and --batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n: int = args.n
    cases = _cases(args.batch_size, args.threads)
    print(
        f"embedded throughput: N={n}, {args.repeats} rounds, tq-aws batch_size="
        f"{args.batch_size}, Dramatiq {dramatiq.__version__} StubBroker, "
        f"{args.threads} worker thread(s)"
    )
    print(describe_machine())
    started = time.perf_counter()
    for case in cases:  # warm-up: imports, pydantic schemas, first-call caches
        case.run(min(n, WARMUP_N))
    for round_ in range(args.repeats):
        # Every other round runs in reverse, so no case always runs first or after the same one.
        for case in cases if round_ % 2 == 0 else reversed(cases):
            case.timings.append(case.run(n))
    by_name = {case.name: case for case in cases}
    print()
    print(render(n, by_name))
    print()
    report(
        ratio_row(
            "plain no-op tasks, embedded: tq-aws / Dramatiq StubBroker+Worker (speed)",
            pair_rounds(by_name["tq plain"], by_name["dramatiq plain"]),
            f">= {TARGET_RATIO:.0f}x",
            lambda ratio: ratio >= TARGET_RATIO,
            speed=True,
            note=f"N={n:,}",
        )
    )
    if n < DEFAULT_N or args.repeats < MIN_ROUNDS:
        print("(a small or short run: indicative only; use the defaults for the figures)")
    print(f"wall time {time.perf_counter() - started:.1f}s; {describe_machine()}")
    if args.profile is not None:
        print()
        print(f"cProfile of one tq-aws {args.profile} run, N={n}:")
        print(profile_tq(args.profile, n, args.batch_size))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
