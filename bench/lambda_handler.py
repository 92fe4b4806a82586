"""The Lambda handler's time per no-op task, against a bare Powertools ``BatchProcessor``.

One Kinesis event of N records (default 1,000; 100 partition keys, one shard), built once as
Lambda shapes it: base64 ``kinesis.data`` holding the record ``add_tasks`` published for a task
(the codec's JSON with its id, timestamps and partition key). It runs through:

* tq-aws: ``app.lambda_handler()`` of a fresh ``TaskQueue`` on its in-memory backends, with a
  single-task executor that calls ``actions.success(task)``. Timed: ``handler(event, context)``,
  i.e. decoding every record into a task, running the sub-batches through the engine
  (admission, the executor, post-processing) and building the response. Afterwards the
  response must name no record and ``app.stats.executed`` must be N.
* baseline: a fresh Powertools ``BatchProcessor(EventType.KinesisDataStreams)`` with a record
  handler that decodes the record's JSON (``record.kinesis.data_as_json()``) and nothing else,
  through ``process_partial_response``. Afterwards the handler must have run N times and the
  response must name no record.

Building the app, the handler and the processor is set-up (module level in a real function) and
stays outside the clock; the process's event loop is made during the warm-up. Each case runs
``--repeats`` rounds, each running both sides back to back, alternating which goes first; the
table shows the best run of each (noise only ever slows a run down). The ratio judged against
the target is the median of the rounds' own ratios, which holds up on a machine whose speed
drifts from round to round; the ratio of the bests, of the medians and of the best CPU times
follow, with the median of the rounds' CPU-time ratios and the spread. Target: tq-aws at most
1.5x the baseline's time per task.

Run: ``python -m bench.lambda_handler`` (``--quick``, ``--n``, ``--repeats``,
``--sub-batch-size``, ``--profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)

from bench._rounds import Paired, describe_machine, ratio_row, report
from tq_aws import Actions, Task, TaskQueue

QUEUE = "bench"
TARGET_RATIO = 1.5
DEFAULT_N = 1_000
KEYS = 100
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/tq-bench"
SHARD = "shardId-000000000000"


class BenchError(RuntimeError):
    """A measured run did not do the work it was timed for."""


class Timing(NamedTuple):
    """One measured run: wall-clock seconds and CPU seconds of the process."""

    wall: float
    cpu: float


class Context:
    """A Lambda context with plenty of time left."""

    function_name = "tq-bench"
    aws_request_id = "bench-request"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def kinesis_event(n: int) -> dict[str, Any]:
    """A Kinesis event of ``n`` no-op task records as Lambda shapes it, the records' data being
    what ``add_tasks`` publishes (ids, timestamps, partition keys filled in)."""
    producer = TaskQueue()
    producer.executor(QUEUE, "noop", partition_key=lambda t: f"key-{t.payload['i'] % KEYS}")(_noop)

    async def publish() -> list[Any]:
        await producer.add_tasks(
            [Task(type="noop", queue_id=QUEUE, payload={"i": i}) for i in range(n)]
        )
        assert producer.source is not None
        return await producer.source.receive(n)

    records = []
    for i, delivery in enumerate(asyncio.run(publish())):
        sequence = f"4959033827149025660855969253836157109592157{i:013d}"
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": delivery.partition_key,
                    "sequenceNumber": sequence,
                    "data": base64.b64encode(delivery.data).decode("ascii"),
                    "approximateArrivalTimestamp": 1_764_000_000.0 + i / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/tq-bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
        )
    return {"Records": records}


def _noop(task: Task, actions: Actions) -> None:
    actions.success(task)


def _timed(run: Callable[[], Any]) -> tuple[Timing, Any]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def _tq_handler(sub_batch_size: int | None) -> tuple[TaskQueue, Callable[..., dict[str, Any]]]:
    app = TaskQueue()
    app.executor(QUEUE, "noop")(_noop)
    return app, app.lambda_handler(sub_batch_size=sub_batch_size)


def _tq_check(app: TaskQueue, n: int, response: dict[str, Any]) -> None:
    if response["batchItemFailures"] or app.stats.executed != n:
        raise BenchError(
            f"tq-aws executed {app.stats.executed} of {n} tasks and reported "
            f"{len(response['batchItemFailures'])} record(s)"
        )


def run_tq(event: dict[str, Any], sub_batch_size: int | None) -> Timing:
    """Time for ``app.lambda_handler()`` to run the event on memory stores."""
    app, handler = _tq_handler(sub_batch_size)
    timing, response = _timed(lambda: handler(event, Context()))
    _tq_check(app, len(event["Records"]), response)
    return timing


def run_baseline(event: dict[str, Any]) -> Timing:
    """Time for a bare Powertools ``BatchProcessor`` whose record handler decodes the JSON."""
    n = len(event["Records"])
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
    decoded: list[int] = []

    def record_handler(record: KinesisStreamRecord) -> None:
        record.kinesis.data_as_json()
        decoded.append(1)

    timing, response = _timed(
        lambda: process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=Context()
        )
    )
    if response["batchItemFailures"] or len(decoded) != n:
        raise BenchError(f"the baseline decoded {len(decoded)} of {n} records")
    return timing


@dataclass(slots=True)
class Case:
    name: str
    run: Callable[[], Timing]
    timings: list[Timing] = field(default_factory=list)

    def best(self) -> float:
        return min(t.wall for t in self.timings)

    def median(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    def best_cpu(self) -> float:
        return min(t.cpu for t in self.timings)


def _us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.1f}"


def paired_ratio(tq: Case, base: Case) -> float:
    """The median of each round's tq-aws / baseline ratio: the two runs of a round are back to
    back, so a machine whose speed drifts between rounds moves both sides of each pair."""
    return statistics.median(t.wall / b.wall for t, b in zip(tq.timings, base.timings, strict=True))


def render(n: int, tq: Case, base: Case) -> str:
    """Both sides' best time per task, and the ratios tq-aws / baseline."""
    lines = [
        f"{'case':<28} {'best s':>8} {'us/task':>8} {'median us':>10}",
        "-" * 57,
    ]
    for case in (tq, base):
        lines.append(
            f"{case.name:<28} {case.best():>8.4f} {_us(case.best(), n):>8} "
            f"{_us(case.median(), n):>10}"
        )
    lines.append("")
    lines.append(
        f"ratio tq-aws / baseline: {paired_ratio(tq, base):.2f}x (median of paired rounds), "
        f"{tq.best() / base.best():.2f}x (best), {tq.median() / base.median():.2f}x (median), "
        f"{tq.best_cpu() / base.best_cpu():.2f}x (best CPU)"
    )
    lines.append("every run, us/task:")
    for case in (tq, base):
        lines.append(f"  {case.name:<26} " + " ".join(f"{_us(t.wall, n):>7}" for t in case.timings))
    return "\n".join(lines)


def profile_tq(event: dict[str, Any], sub_batch_size: int | None, top: int = 30) -> str:
    """cProfile of one handler call: top functions by own time and by cumulative time."""
    app, handler = _tq_handler(sub_batch_size)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    response = handler(event, Context())
    profiler.disable()
    _tq_check(app, len(event["Records"]), response)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lambda_handler",
        description="Lambda handler time per no-op task against a bare Powertools "
        "BatchProcessor that decodes JSON.",
    )
    parser.add_argument(
        "--n", type=int, default=DEFAULT_N, help=f"records in the event (default {DEFAULT_N})"
    )
    parser.add_argument("--quick", action="store_true", help="2 repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per case (default 15)")
    parser.add_argument(
        "--sub-batch-size",
        type=int,
        default=None,
        help="the handler's sub_batch_size (default: the app's batch_size, 100)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="after the table, a cProfile of one handler run"
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 15
    if (
        args.n < 1
        or args.repeats < 1
        or (args.sub_batch_size is not None and args.sub_batch_size < 1)
    ):
        parser.error("--n, --repeats and --sub-batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n: int = args.n
    event = kinesis_event(n)
    tq = Case("tq-aws lambda_handler", lambda: run_tq(event, args.sub_batch_size))
    base = Case("Powertools BatchProcessor", lambda: run_baseline(event))
    print(
        f"Lambda handler: one Kinesis event of {n} records ({KEYS} keys), {args.repeats} "
        f"rounds, sub_batch_size={args.sub_batch_size or 'batch_size (100)'}"
    )
    print(describe_machine())
    started = time.perf_counter()
    for case in (tq, base):  # warm-up: imports, pydantic schemas, the process's event loop
        case.run()
    for round_ in range(args.repeats):
        for case in (tq, base) if round_ % 2 == 0 else (base, tq):
            case.timings.append(case.run())
    print()
    print(render(n, tq, base))
    print()
    paired = Paired(list(tq.timings), list(base.timings))
    report(
        ratio_row(
            f"Lambda handler per record, {n:,}-record Kinesis event: tq-aws / bare Powertools "
            "BatchProcessor decoding the JSON",
            paired,
            f"<= {TARGET_RATIO:.1f}x",
            lambda ratio: ratio <= TARGET_RATIO,
        )
    )
    print(f"wall time {time.perf_counter() - started:.1f}s; {describe_machine()}")
    if args.profile:
        print()
        print(f"cProfile of one handler run, N={n}:")
        print(profile_tq(event, args.sub_batch_size))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
