"""One flow of N no-op steps on tq-aws's embedded default, against a Dramatiq group with a
completion callback: time and peak memory of each, and the flow store's memory per step.

The two sides:

* tq-aws: a fresh ``TaskQueue`` on its in-memory backends and the real clock. A ``start`` task
  builds N ``step`` tasks and calls ``actions.start_flow(steps, join=Join(...))``; each step
  succeeds at once; the ``join`` task receives ``flow_results`` with N entries (checked).
  Timed: from ``add_tasks([start])`` until the join executor has run.
* Dramatiq: a fresh ``StubBroker`` with the ``GroupCallbacks`` middleware on the rate-limit
  ``StubBackend``, a ``Worker`` (built before the clock starts), and
  ``group([step.message(i) for i in range(N)]).add_completion_callback(done.message()).run()``.
  Timed: from building the N messages until the callback actor has run. Every step must have
  run and nothing may be dead-lettered.

The sides do not do the same work: the tq-aws join carries every step's result (and its record
is kept in the task store), while the Dramatiq callback gets nothing but the signal that the
group is done (no result backend is configured).

Each measurement runs in a fresh interpreter (``--child``), after a warm-up, so that one side's
heap never flatters or penalises the other:

* time: untraced; it also reports the RSS high-water above the warmed-up baseline (``VmHWM``
  from ``/proc/self/status``, reset through ``/proc/self/clear_refs``; elsewhere the delta of
  the ``getrusage`` high-water, which a child may inherit from its parent, so it can come out
  low);
* memory: under ``tracemalloc`` (which slows the run several times, so it is not timed): the
  peak of the memory the run allocated, and what the TaskQueue (or the broker) still holds
  after the join.

Both runs mark the end of each phase of the flow (build the steps, start the flow, dispatch,
run the steps, fan in): the time run gives each phase's seconds, the memory run the peak within
it and what is live at its end, so a table shows where the time and the bytes go.

``--repeats`` rounds (default 5) of time runs go one after the other, each round running both
sides, every other round starting with Dramatiq; the time ratio is the median of the rounds'
ratios (CPU-time ratio and spread beside it). ``--memory-repeats`` rounds (default 5) of
memory runs go ``--jobs`` at a time; the peak ratio is the median of theirs. Targets: time at
most 0.33x Dramatiq's, peak memory at most 1.0x. Then tq-aws flows
of several sizes show the peak bytes per step, that the flow store holds no step result after
the join (``step_count(flow_id) == 0``) and that the barrier it keeps is small and the same size
whatever N is.

Run: ``python -m bench.flow`` (``--quick``, ``--steps``, ``--batch-size``, ``--threads``,
``--repeats``, ``--memory-repeats``, ``--jobs``, ``--profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import json
import os
import pstats
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.composition import group
from dramatiq.middleware import GroupCallbacks
from dramatiq.rate_limits.backends import StubBackend

from bench._rounds import MIN_ROUNDS, Paired, Row, Timing, describe_machine, ratio_row, report
from tq_aws import Actions, Join, Task, TaskQueue
from tq_aws.backends.memory.flow_store import MemoryFlowStore

QUEUE = "bench"
DEFAULT_STEPS = 100_000
QUICK_STEPS = 10_000
WARMUP_STEPS = 1_000
FLOW_STORE_LIMIT = 4096
"""Bytes the flow store may still hold for one flow after its join: the barrier only."""
CHILD_TIMEOUT = 900.0
RESULT_PREFIX = "FLOW-BENCH-RESULT "
MiB = 1024 * 1024
TARGET_TIME = 0.33
TARGET_PEAK = 1.0
ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A measured run did not do the work it was timed for, or kept what it should not."""


@dataclass(slots=True)
class Measure:
    """One run of one side, as a child reports it."""

    side: str
    mode: str
    steps: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time over ``seconds`` (all threads): less sensitive to a busy machine."""
    idle_seconds: float = 0.0
    phase_ends: dict[str, float] = field(default_factory=dict)
    """Seconds from the start of the run to the end of each phase, in order."""
    phase_cpu: dict[str, float] = field(default_factory=dict)
    """Process CPU seconds from the start of the run to the end of each phase."""
    phase_memory: dict[str, list[int]] = field(default_factory=dict)
    """Traced runs: the peak within each phase and the memory live at its end, in bytes."""
    rss_delta: int = 0
    rss_source: str = ""
    peak: int = 0
    retained: int = 0
    held_by_app: int = 0
    flow_store_before: int = 0
    flow_store_after: int = 0
    results_held_open: int = 0
    results_held_after: int = 0


# -- memory helpers ---------------------------------------------------------------------------

_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, Enum)


def deep_size(root: object) -> int:
    """Bytes of ``root`` and every object it reaches, not counting classes, modules, functions
    or enum members (shared by every instance, not owned by it)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_rss_high_water() -> int:
    """Start a new RSS high-water mark here, if the system allows it; return the baseline to
    subtract from ``rss_high_water()`` afterwards."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    current = _proc_status_kib("VmRSS")
    if current is not None and _proc_status_kib("VmHWM") is not None:
        return current * 1024
    return rss_high_water()[0]


def rss_high_water() -> tuple[int, str]:
    """This process's RSS high-water in bytes, and where it came from."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024, "VmHWM"
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (maxrss if sys.platform == "darwin" else maxrss * 1024), "getrusage"


class Phases:
    """The end of each phase of a run: its time and, when traced, the peak within the phase and
    the memory live at its end (the peak is reset at each end, so phases do not mix)."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced
        self.started = 0.0
        self.cpu_started = 0.0
        self.ends: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.memory: dict[str, list[int]] = {}

    def begin(self) -> None:
        if self.traced:
            tracemalloc.start()
        self.cpu_started = time.process_time()
        self.started = time.perf_counter()

    def end(self, name: str) -> None:
        self.ends[name] = time.perf_counter() - self.started
        self.cpu[name] = time.process_time() - self.cpu_started
        if self.traced:
            current, peak = tracemalloc.get_traced_memory()
            self.memory[name] = [peak, current]
            tracemalloc.reset_peak()

    def peak(self) -> int:
        return max((peak for peak, _ in self.memory.values()), default=0)


# -- tq-aws -----------------------------------------------------------------------------------


async def tq_flow(n: int, batch_size: int, *, traced: bool) -> Measure:
    """Run one flow of ``n`` no-op steps on a fresh ``TaskQueue`` and check its join."""
    app = TaskQueue(batch_size=batch_size)
    flow_store = app.flow_store
    if not isinstance(flow_store, MemoryFlowStore):
        raise BenchError(f"expected the memory flow store, got {type(flow_store).__name__}")
    seen: dict[str, Any] = {"steps": 0, "joins": 0}
    phases = Phases(traced)

    @app.executor(QUEUE, "start")
    async def start(task: Task, actions: Actions) -> None:
        phases.end("add the start task")
        steps = [Task(type="step", queue_id=QUEUE, payload={"i": i}) for i in range(n)]
        phases.end("build N step tasks")
        seen["flow_id"] = actions.start_flow(steps=steps, join=Join(queue_id=QUEUE, type="join"))
        phases.end("start_flow")
        actions.success(task)

    @app.executor(QUEUE, "step")
    async def step(task: Task, actions: Actions) -> None:
        seen["steps"] += 1
        if seen["steps"] == 1:
            phases.end("dispatch the steps")
        if seen["steps"] == n:
            seen["held_open"] = flow_store.step_count(seen["flow_id"])
            phases.end("run the steps")
        actions.success(task)

    @app.executor(QUEUE, "join")
    async def join(task: Task, actions: Actions) -> None:
        results = task.payload["flow_results"]["steps"]
        seen["joins"] += 1
        seen["join_steps"] = len(results)
        seen["join_ok"] = sum(1 for r in results if r["status"] == "success")
        actions.success(task)
        phases.end("fan in to the join")

    flow_store_before = deep_size(flow_store) if traced else 0
    gc.collect()
    phases.begin()
    await app.add_tasks([Task(type="start", queue_id=QUEUE)])
    await app.run_until_idle()
    phases.end("until idle")

    flow_id = str(seen.get("flow_id"))
    if seen["steps"] != n or seen["joins"] != 1 or seen.get("join_steps") != n:
        raise BenchError(
            f"tq-aws ran {seen['steps']} of {n} steps and {seen['joins']} join(s) "
            f"carrying {seen.get('join_steps')} result(s)"
        )
    if seen["join_ok"] != n or app.stats.failed:
        raise BenchError(f"tq-aws: {n - seen['join_ok']} step(s) did not succeed")
    status = await app.flow_status(flow_id)
    if status is None or status.state != "joined":
        raise BenchError(f"tq-aws flow {flow_id} is {status and status.state}, not joined")
    held_after = flow_store.step_count(flow_id)
    if held_after != 0:
        raise BenchError(f"tq-aws flow store still holds {held_after} step results after the join")
    measure = Measure(
        side="tq-aws",
        mode="memory" if traced else "time",
        steps=n,
        seconds=phases.ends["fan in to the join"],
        cpu_seconds=phases.cpu["fan in to the join"],
        idle_seconds=phases.ends["until idle"],
        phase_ends=phases.ends,
        phase_cpu=phases.cpu,
        phase_memory=phases.memory,
        peak=phases.peak(),
        results_held_open=int(seen.get("held_open", -1)),
        results_held_after=held_after,
    )
    if traced:
        measure.flow_store_before = flow_store_before
        measure.flow_store_after = deep_size(flow_store)
        gc.collect()
        measure.retained = tracemalloc.get_traced_memory()[0]
        del app  # with it its stores: what it held is what the run left in the TaskQueue
        gc.collect()
        measure.held_by_app = measure.retained - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        if measure.flow_store_after - flow_store_before > FLOW_STORE_LIMIT:
            raise BenchError(
                f"tq-aws flow store grew by {measure.flow_store_after - flow_store_before} "
                f"bytes for one joined flow (limit {FLOW_STORE_LIMIT}): it keeps more than "
                "the barrier"
            )
    return measure


def run_tq(n: int, batch_size: int, *, traced: bool) -> Measure:
    return asyncio.run(tq_flow(n, batch_size, traced=traced))


# -- Dramatiq ---------------------------------------------------------------------------------


def run_dramatiq(n: int, threads: int, *, traced: bool) -> Measure:
    """Run a group of ``n`` no-op messages with a completion callback on a fresh StubBroker."""
    broker = StubBroker()
    rate_limits = StubBackend()  # type: ignore[no-untyped-call]
    broker.add_middleware(GroupCallbacks(rate_limiter_backend=rate_limits))
    ran = itertools.count()
    done = threading.Event()
    callbacks = itertools.count()
    phases = Phases(traced)

    def step(i: int) -> None:
        next(ran)

    def finished() -> None:
        next(callbacks)
        phases.end("run the steps and the callback")
        done.set()

    step_actor = dramatiq.actor(broker=broker, actor_name="step", queue_name=QUEUE)(step)
    done_actor = dramatiq.actor(broker=broker, actor_name="done", queue_name=QUEUE)(finished)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    gc.collect()
    try:
        phases.begin()
        messages = [step_actor.message(i) for i in range(n)]
        phases.end("build N step messages")
        flow = group(messages, broker=broker)  # type: ignore[no-untyped-call]
        del messages
        flow.add_completion_callback(done_actor.message())  # type: ignore[no-untyped-call]
        flow.run()  # type: ignore[no-untyped-call]
        phases.end("group.run: enqueue the steps")
        worker.start()
        if not done.wait(CHILD_TIMEOUT):
            raise BenchError(f"Dramatiq: the completion callback did not run ({next(ran)} steps)")
        broker.join(QUEUE)
        phases.end("until idle")
    finally:
        worker.stop()
        broker.close()
    del flow  # the producer's handle on the group
    steps, calls = next(ran), next(callbacks)
    if steps != n or calls != 1 or broker.dead_letters:
        raise BenchError(
            f"Dramatiq ran {steps} of {n} steps and {calls} callback(s); "
            f"{len(broker.dead_letters)} dead-lettered"
        )
    measure = Measure(
        side="Dramatiq",
        mode="memory" if traced else "time",
        steps=n,
        seconds=phases.ends["run the steps and the callback"],
        cpu_seconds=phases.cpu["run the steps and the callback"],
        idle_seconds=phases.ends["until idle"],
        phase_ends=phases.ends,
        phase_cpu=phases.cpu,
        phase_memory=phases.memory,
        peak=phases.peak(),
    )
    if traced:
        gc.collect()
        measure.retained = tracemalloc.get_traced_memory()[0]
        del broker, rate_limits, step_actor, done_actor, worker
        gc.collect()
        measure.held_by_app = measure.retained - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    return measure


# -- one measurement in this process (the child) ----------------------------------------------


def measure_here(side: str, mode: str, n: int, batch_size: int, threads: int) -> Measure:
    """Warm up, then run one measurement of one side in this process."""
    traced = mode == "memory"

    def run(steps: int, traced: bool) -> Measure:
        if side == "tq-aws":
            return run_tq(steps, batch_size, traced=traced)
        return run_dramatiq(steps, threads, traced=traced)

    run(min(n, WARMUP_STEPS), False)
    gc.collect()
    base = reset_rss_high_water()
    measure = run(n, traced)
    if not traced:
        high, source = rss_high_water()
        measure.rss_delta = max(0, high - base)
        measure.rss_source = source
    return measure


def measure_in_child(side: str, mode: str, n: int, args: argparse.Namespace) -> Measure:
    """Run ``measure_here`` in a fresh interpreter and return what it reports."""
    command = [
        sys.executable,
        "-m",
        "bench.flow",
        "--child",
        side,
        "--mode",
        mode,
        "--steps",
        str(n),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{side} {mode} run of {n} steps took over {CHILD_TIMEOUT:.0f}s") from exc
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measure(**json.loads(line[len(RESULT_PREFIX) :]))
    raise BenchError(
        f"{side} {mode} run of {n} steps failed (exit {done.returncode}):\n"
        f"{done.stderr.strip() or done.stdout.strip()}"
    )


# -- the report -------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / MiB:,.1f}"


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def render_comparison(tq: tuple[Measure, Measure], dq: tuple[Measure, Measure]) -> str:
    """Per side, its median runs: N, seconds, CPU seconds, steps/s, tracemalloc peak, RSS
    high-water; then what each still holds."""
    header = (
        f"{'side':<9} {'N':>8} {'seconds':>8} {'CPU s':>7} {'steps/s':>8} "
        f"{'peak MiB':>9} {'B/step':>7} {'RSS MiB':>8}"
    )
    lines = [header, "-" * len(header)]
    for timed, traced in (tq, dq):
        n = timed.steps
        lines.append(
            f"{timed.side:<9} {n:>8} {timed.seconds:>8.2f} {timed.cpu_seconds:>7.2f} "
            f"{_rate(n, timed.seconds):>8} {_mib(traced.peak):>9} {traced.peak // n:>7,} "
            f"{_mib(timed.rss_delta):>8}"
        )
    lines.append("")
    lines.append(
        f"still held after the join/callback (tracemalloc): tq-aws {_mib(tq[1].held_by_app)} MiB "
        f"in the TaskQueue (the join's task-store record, with its {tq[1].steps:,} results), "
        f"Dramatiq {_mib(dq[1].held_by_app)} MiB in the broker and backend"
    )
    return "\n".join(lines)


def render_phases(sides: Sequence[tuple[Measure, Measure]]) -> str:
    """Per side and phase: seconds and CPU seconds (untraced run), the traced run's peak within
    the phase and the memory live at its end, both also per step."""
    header = (
        f"{'phase':<32} {'seconds':>8} {'CPU s':>6} {'peak MiB':>9} {'B/step':>7} "
        f"{'live MiB':>9} {'B/step':>7}"
    )
    lines = [header, "-" * len(header)]
    for timed, traced in sides:
        n = timed.steps
        lines.append(f"{timed.side} (N={n:,})")
        previous = previous_cpu = 0.0
        for name, end in timed.phase_ends.items():
            cpu = timed.phase_cpu.get(name, previous_cpu)
            peak, live = traced.phase_memory.get(name, [0, 0])
            lines.append(
                f"  {name:<30} {end - previous:>8.2f} {cpu - previous_cpu:>6.2f} "
                f"{_mib(peak):>9} {peak // n:>7,} {_mib(live):>9} {live // n:>7,}"
            )
            previous, previous_cpu = end, cpu
    return "\n".join(lines)


def render_proportionality(sweep: Sequence[Measure]) -> str:
    """By N: the run's peak per step and between sizes, the step results the flow store held
    at the last step and after the join, the flow store's size after the join, and what the
    TaskQueue still holds."""
    header = (
        f"{'N':>8} {'peak MiB':>9} {'B/step':>7} {'marginal':>8}  {'results held':>16}  "
        f"{'flow store B':>12}  {'TaskQueue holds after':>21}"
    )
    sub = (
        f"{'':>8} {'':>9} {'':>7} {'B/step':>8}  {'last step':>10} {'after':>5}  "
        f"{'after join':>12}  {'MiB':>8} {'B/step':>12}"
    )
    lines = [header, sub, "-" * len(header)]
    previous: Measure | None = None
    for m in sweep:
        marginal = ""
        if previous is not None:
            marginal = f"{(m.peak - previous.peak) // (m.steps - previous.steps):,}"
        lines.append(
            f"{m.steps:>8} {_mib(m.peak):>9} {m.peak // m.steps:>7,} {marginal:>8}  "
            f"{m.results_held_open:>10,} {m.results_held_after:>5}  "
            f"{m.flow_store_after:>12,}  {_mib(m.held_by_app):>8} {m.held_by_app // m.steps:>12,}"
        )
        previous = m
    growth = [m.flow_store_after - m.flow_store_before for m in sweep]
    lines.append("")
    lines.append(
        f"after the join the flow store holds 0 step results at every N, and the barrier: "
        f"{min(growth):,}..{max(growth):,} bytes over the empty store whatever N "
        f"(limit {FLOW_STORE_LIMIT:,}); what the TaskQueue still holds is the join's "
        "task-store record, whose payload has one result per step"
    )
    return "\n".join(lines)


def profile_tq(n: int, batch_size: int, top: int = 25) -> str:
    """cProfile of one tq-aws flow, top functions by own time and by cumulative time."""
    run_tq(min(n, WARMUP_STEPS), batch_size, traced=False)
    profiler = cProfile.Profile()
    profiler.enable()
    run_tq(n, batch_size, traced=False)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- the run ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flow",
        description="One flow of N no-op steps: tq-aws against a Dramatiq group with a "
        "completion callback; time, peak memory and the flow store's memory per step.",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help=f"steps in the flow (default {DEFAULT_STEPS:,})"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS:,} steps: a smoke run")
    parser.add_argument(
        "--batch-size", type=int, default=100, help="tq-aws TaskQueue batch_size (default 100)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="Dramatiq worker threads (default 8, its default)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"rounds of time runs, alternating (default {MIN_ROUNDS}; --quick: 1)",
    )
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=None,
        help=f"rounds of traced runs (default {MIN_ROUNDS}; --quick: 1)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="memory runs at once (default: 2, or 1 on one CPU); time runs are never parallel",
    )
    parser.add_argument(
        "--profile", action="store_true", help="after the tables, cProfile one tq-aws flow"
    )
    parser.add_argument("--child", choices=("tq-aws", "Dramatiq"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", choices=("time", "memory"), default="time", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else DEFAULT_STEPS
    if args.repeats is None:
        args.repeats = 1 if args.quick else MIN_ROUNDS
    if args.memory_repeats is None:
        args.memory_repeats = 1 if args.quick else MIN_ROUNDS
    if (
        min(args.steps, args.batch_size, args.threads, args.jobs, args.repeats, args.memory_repeats)
        < 1
    ):
        parser.error("--steps, --batch-size, --threads, --jobs and the repeats must be at least 1")
    return args


def _median_run(runs: Sequence[Measure], key: Callable[[Measure], float]) -> Measure:
    """The run at the median of ``key`` (the upper one of an even count)."""
    return sorted(runs, key=key)[len(runs) // 2]


def sweep_sizes(n: int, quick: bool) -> list[int]:
    """The flow sizes of the memory-per-step table: N and two smaller ones."""
    smaller = (1_000, n // 2) if quick else (n // 100, n // 10)
    return sorted({size for size in (*smaller, n) if size >= 1})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n: int = args.steps
    if args.child is not None:
        measure = measure_here(args.child, args.mode, n, args.batch_size, args.threads)
        print(RESULT_PREFIX + json.dumps(asdict(measure)), flush=True)
        return 0

    print(
        f"flow of N={n:,} no-op steps: tq-aws (embedded default, batch_size={args.batch_size}, "
        f"join carries every result) vs Dramatiq {dramatiq.__version__} group + completion "
        f"callback (StubBroker, GroupCallbacks on the rate-limit StubBackend, "
        f"{args.threads} worker thread(s))"
    )
    print(
        f"{describe_machine()}; each run in a fresh interpreter after a warm-up of "
        f"{min(n, WARMUP_STEPS):,} steps; {args.repeats} time rounds, "
        f"{args.memory_repeats} memory rounds",
        flush=True,
    )
    started = time.perf_counter()
    try:
        timed = Paired()
        tq_runs: list[Measure] = []
        dq_runs: list[Measure] = []
        for round_ in range(args.repeats):  # alternating, so a busy spell hits both sides
            order = ("tq-aws", "Dramatiq") if round_ % 2 == 0 else ("Dramatiq", "tq-aws")
            got = {side: measure_in_child(side, "time", n, args) for side in order}
            tq_runs.append(got["tq-aws"])
            dq_runs.append(got["Dramatiq"])
            timed.add(
                Timing(got["tq-aws"].seconds, got["tq-aws"].cpu_seconds),
                Timing(got["Dramatiq"].seconds, got["Dramatiq"].cpu_seconds),
            )
        sizes = sweep_sizes(n, args.quick)
        jobs: list[tuple[str, int]] = []
        for round_ in range(args.memory_repeats):
            pair = [("tq-aws", n), ("Dramatiq", n)]
            jobs.extend(pair if round_ % 2 == 0 else reversed(pair))
        jobs.extend(("tq-aws", size) for size in reversed(sizes) if size != n)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(measure_in_child, side, "memory", size, args) for side, size in jobs
            ]
            traced = [future.result() for future in futures]
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    tq_memories = [m for m in traced if m.side == "tq-aws" and m.steps == n]
    dq_memories = [m for m in traced if m.side == "Dramatiq"]
    peaks = Paired()
    for t, d in zip(tq_memories, dq_memories, strict=True):
        peaks.add(Timing(t.peak, 0.0), Timing(d.peak, 0.0))
    tq_memory = _median_run(tq_memories, lambda m: m.peak)
    dq_memory = _median_run(dq_memories, lambda m: m.peak)
    tq_time = _median_run(tq_runs, lambda m: m.seconds)
    dq_time = _median_run(dq_runs, lambda m: m.seconds)
    sweep = sorted(
        [m for m in traced if m.side == "tq-aws" and m.steps != n] + [tq_memory],
        key=lambda m: m.steps,
    )
    print()
    print(render_comparison((tq_time, tq_memory), (dq_time, dq_memory)))
    print()
    print("every time run, seconds:")
    print("  tq-aws   " + " ".join(f"{m.seconds:>7.2f}" for m in tq_runs))
    print("  Dramatiq " + " ".join(f"{m.seconds:>7.2f}" for m in dq_runs))
    print("every traced run, peak B/step:")
    print("  tq-aws   " + " ".join(f"{m.peak // n:>7,}" for m in tq_memories))
    print("  Dramatiq " + " ".join(f"{m.peak // n:>7,}" for m in dq_memories))
    print()
    print("by phase (seconds and CPU seconds from the median untraced run; memory from the median")
    print("traced run: the peak within the phase and what is live at its end):")
    print(render_phases(((tq_time, tq_memory), (dq_time, dq_memory))))
    print()
    print("tq-aws memory per step (tracemalloc peak of the run; marginal: between two sizes):")
    print(render_proportionality(sweep))
    if tq_time.rss_source != "VmHWM":
        print("(RSS from getrusage: the high-water a child inherits can hide part of its delta)")
    print()
    report(
        ratio_row(
            f"flow of {n:,} no-op steps to its join / Dramatiq group + completion callback, time",
            timed,
            f"<= {TARGET_TIME:.2f}x",
            lambda ratio: ratio <= TARGET_TIME,
        )
    )
    low, high = peaks.spread()
    report(
        Row(
            measure="same, peak memory (tracemalloc)",
            value=(
                f"{peaks.ratio():.2f}x ({tq_memory.peak // n:,} vs {dq_memory.peak // n:,} B/step)"
            ),
            cpu="",
            spread=f"{low:.2f}-{high:.2f}x",
            target=f"<= {TARGET_PEAK:.1f}x",
            met=peaks.ratio() <= TARGET_PEAK,
            note=f"median of {peaks.rounds} paired traced runs",
        )
    )
    if n < DEFAULT_STEPS:
        print(f"(a small run: indicative only; the default is N={DEFAULT_STEPS:,})")
    print(f"wall time {time.perf_counter() - started:.1f}s; {describe_machine()}")
    if args.profile:
        print()
        print(f"cProfile of one tq-aws flow, N={n:,}:")
        print(profile_tq(n, args.batch_size))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
