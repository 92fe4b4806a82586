"""Cold start: what a fresh Lambda interpreter spends before it can take its first event.

Each run is a fresh interpreter (``python -c``), timed from its first statement to the end of
the set-up (the interpreter's own start-up is the same for every side and left out; the whole
process's wall time is printed beside it). The sides:

* ``kinesis``: tq-aws as a Kinesis consumer Lambda: ``import tq_aws``,
  ``TaskQueue.from_env()`` with ``TQ_STREAM``, ``TQ_TABLE`` and ``TQ_SCHEDULER_ROLE_ARN`` set
  (as the templates set them), one ``@app.executor`` and ``app.lambda_handler()``.
* ``embedded``: the same on the embedded default (no ``TQ_*`` variable set).
* ``powertools`` (the baseline): ``from aws_lambda_powertools.utilities.batch import
  BatchProcessor, EventType, process_partial_response``, ``BatchProcessor(EventType.
  KinesisDataStreams)`` and ``boto3.client("dynamodb")``: a bare Powertools consumer that
  reads and writes DynamoDB.

Both the ``kinesis`` side and the baseline make their DynamoDB client in the set-up (tq-aws's
stores build theirs, through pynamodb's connection, in ``from_env()``): neither leaves loading
the SDK's service data to the first event.

Every child also reports which AWS SDK modules it imported (botocore's sessions, boto3,
aioboto3, aiobotocore, aiohttp, pynamodb; the bare ``botocore`` package that Powertools imports
for its user-agent hook is not counted): the embedded default must import none of them, and a
Kinesis consumer none of aioboto3, aiobotocore and aiohttp (nothing it needs before it sends).

Every run gets the same environment: dummy credentials and region (nothing is sent: no client
makes a request at set-up), no ``TQ_*`` variable but the side's own, and bytecode cached in a
fresh directory (``PYTHONPYCACHEPREFIX``) that a warm-up run of each side fills first, so both
sides import compiled modules, as a deployment package with its ``.pyc`` files does.
``--rounds`` rounds (default 7) each run the three sides, every other round in reverse order;
a ratio is the median of the rounds' ratios, the CPU ratio that of the children's user + system
times.

Run: ``python -m bench.cold_start`` (``--quick``, ``--rounds``, ``--importtime SIDE``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._rounds import MIN_ROUNDS, Paired, Row, Timing, describe_machine, ratio_row, report

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "COLD-START-RESULT "
TARGET_RATIO = 1.5
DEFAULT_ROUNDS = 7
SDK_MODULES = (
    "botocore.session",
    "boto3",
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "pynamodb",
)
NOT_FOR_A_KINESIS_CONSUMER = ("aioboto3", "aiobotocore", "aiohttp")

_PROLOGUE = """
import time
_wall, _cpu = time.perf_counter(), time.process_time()
"""

_EPILOGUE = f"""
_took = (time.perf_counter() - _wall, time.process_time() - _cpu)
import json, sys
print({RESULT_PREFIX!r} + json.dumps({{
    "wall": _took[0],
    "cpu": _took[1],
    "modules": len(sys.modules),
    "sdk": [m for m in {SDK_MODULES!r} if m in sys.modules],
}}))
"""

TQ_SETUP = """
from tq_aws import TaskQueue

app = TaskQueue.from_env()

@app.executor("orders", "ship")
def ship(task, actions):
    actions.success(task)

handler = app.lambda_handler()
"""

POWERTOOLS_SETUP = """
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
import boto3

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
dynamodb = boto3.client("dynamodb")
"""

SIDES: dict[str, tuple[str, dict[str, str]]] = {
    "kinesis": (
        TQ_SETUP,
        {
            "TQ_STREAM": "tq-bench",
            "TQ_TABLE": "tq-bench",
            "TQ_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/tq-scheduler",
        },
    ),
    "embedded": (TQ_SETUP, {}),
    "powertools": (POWERTOOLS_SETUP, {}),
}


@dataclass(slots=True)
class Run:
    """One child: its set-up time, the whole process's wall time and what it imported."""

    side: str
    wall: float
    cpu: float
    process_wall: float
    process_cpu: float
    modules: int
    sdk: list[str] = field(default_factory=list)


def child_env(side: str, pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQ_", "AWS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPYCACHEPREFIX": pycache,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "bench",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.update(SIDES[side][1])
    return env


def run_side(side: str, pycache: str, *, extra: Sequence[str] = ()) -> Run:
    """One fresh interpreter running the side's set-up; what it reports."""
    code = _PROLOGUE + textwrap.dedent(SIDES[side][0]) + _EPILOGUE
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *extra, "-c", code],
        cwd=tempfile.gettempdir(),  # nothing of the repository on the path but PYTHONPATH
        env=child_env(side, pycache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    process_wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    process_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            got = json.loads(line[len(RESULT_PREFIX) :])
            return Run(
                side,
                got["wall"],
                got["cpu"],
                process_wall,
                process_cpu,
                got["modules"],
                got["sdk"],
            )
    raise RuntimeError(
        f"cold start of {side} failed (exit {done.returncode}):\n{done.stderr.strip()}"
    )


def pair(runs: dict[str, list[Run]], side: str, *, process: bool = False) -> Paired:
    paired = Paired()
    for t, b in zip(runs[side], runs["powertools"], strict=True):
        if process:
            paired.add(Timing(t.process_wall, t.process_cpu), Timing(b.process_wall, b.process_cpu))
        else:
            paired.add(Timing(t.wall, t.cpu), Timing(b.wall, b.cpu))
    return paired


def _ms(values: Sequence[float]) -> str:
    return " ".join(f"{v * 1000:>6.0f}" for v in values)


def render(runs: dict[str, list[Run]]) -> str:
    header = f"{'side':<11} {'median ms':>9} {'CPU ms':>7} {'process ms':>10} {'modules':>7}  SDK"
    lines = [header, "-" * (len(header) + 30)]
    for side, side_runs in runs.items():
        walls = sorted(r.wall for r in side_runs)
        cpus = sorted(r.cpu for r in side_runs)
        procs = sorted(r.process_wall for r in side_runs)
        mid = len(walls) // 2
        lines.append(
            f"{side:<11} {walls[mid] * 1000:>9.0f} {cpus[mid] * 1000:>7.0f} "
            f"{procs[mid] * 1000:>10.0f} {side_runs[0].modules:>7}  "
            f"{','.join(side_runs[0].sdk) or 'none'}"
        )
    lines.append("")
    lines.append("every run, ms of set-up (the process's own start-up left out):")
    for side, side_runs in runs.items():
        lines.append(f"  {side:<11} {_ms([r.wall for r in side_runs])}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cold_start",
        description="Cold start of a tq-aws Lambda (Kinesis consumer, embedded default) "
        "against a bare Powertools BatchProcessor with a boto3 DynamoDB client.",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 rounds: a smoke run")
    parser.add_argument(
        "--importtime",
        choices=tuple(SIDES),
        default=None,
        help="after the table, the slowest imports of one side (python -X importtime)",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def importtime(side: str, pycache: str, top: int = 30) -> str:
    """The ``top`` imports of one side by cumulative microseconds (``-X importtime``)."""
    code = textwrap.dedent(SIDES[side][0])
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=tempfile.gettempdir(),
        env=child_env(side, pycache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            first, cumulative, name = (part.strip() for part in line.split("|", 2))
            own = first.removeprefix("import time:").strip()
            if own.isdigit() and cumulative.isdigit():
                rows.append((int(cumulative), int(own), name))
    rows.sort(reverse=True)
    out = [f"{'cumulative us':>13} {'own us':>8}  module"]
    out.extend(f"{c:>13,} {o:>8,}  {n}" for c, o, n in rows[:top])
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"cold start, fresh interpreters: {args.rounds} rounds of tq-aws Kinesis consumer, "
        "tq-aws embedded default and bare Powertools + boto3 DynamoDB client"
    )
    print(describe_machine(), flush=True)
    started = time.perf_counter()
    sides = list(SIDES)
    runs: dict[str, list[Run]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="tq-bench-pycache-") as pycache:
        for side in sides:  # warm-up: compiles every module into the cache
            run_side(side, pycache)
        for round_ in range(args.rounds):
            for side in sides if round_ % 2 == 0 else reversed(sides):
                runs[side].append(run_side(side, pycache))
        profile = importtime(args.importtime, pycache) if args.importtime else None
    print()
    print(render(runs))
    print()
    kinesis_sdk = sorted(set().union(*(r.sdk for r in runs["kinesis"])))
    embedded_sdk = sorted(set().union(*(r.sdk for r in runs["embedded"])))
    whole = pair(runs, "kinesis", process=True)
    report(
        ratio_row(
            "cold start: import + TaskQueue.from_env() + one executor + lambda_handler() / "
            "import Powertools batch + BatchProcessor + a boto3 DynamoDB client",
            pair(runs, "kinesis"),
            f"<= {TARGET_RATIO:.1f}x",
            lambda ratio: ratio <= TARGET_RATIO,
            note=(
                f"Kinesis consumer; whole process {whole.ratio():.2f}x; imported "
                f"{','.join(kinesis_sdk) or 'no SDK'}"
            ),
        )
    )
    unwanted = [m for m in kinesis_sdk if m in NOT_FOR_A_KINESIS_CONSUMER]
    report(
        Row(
            measure="the Kinesis consumer's cold start imports nothing of aioboto3, "
            "aiobotocore, aiohttp",
            value=", ".join(unwanted) or "none of them",
            cpu="",
            spread="",
            target="none of them",
            met=not unwanted,
        )
    )
    embedded = pair(runs, "embedded")
    walls = sorted(r.wall for r in runs["embedded"])
    low, high = embedded.spread()
    report(
        Row(
            measure="the same on the embedded default",
            value=f"{walls[len(walls) // 2]:.3f} s ({embedded.ratio():.2f}x the baseline)",
            cpu=f"{embedded.cpu_ratio():.2f}x",
            spread=f"{low:.2f}-{high:.2f}x",
            target="no AWS SDK imported",
            met=not embedded_sdk,
            note=f"median of {embedded.rounds} rounds; imported "
            f"{','.join(embedded_sdk) or 'no AWS SDK'}",
        )
    )
    if args.rounds < MIN_ROUNDS:
        print("(a short run: indicative only; use the defaults for the figures)")
    print(f"wall time {time.perf_counter() - started:.1f}s; {describe_machine()}")
    if profile is not None:
        print()
        print(f"slowest imports of {args.importtime}:")
        print(profile)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
