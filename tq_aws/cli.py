"""The ``tq-aws`` command: ``demo``, ``worker`` and ``poison``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from tq_aws.app import TaskQueue


def load_app(spec: str) -> TaskQueue:
    """Import ``module:attr`` and return the TaskQueue it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"--app {spec!r}: give module:attribute, e.g. myapp.tasks:app")
    app = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(app, TaskQueue):
        raise SystemExit(f"--app {spec!r}: {attr} is not a tq_aws.TaskQueue")
    return app


async def _run_local_worker(app: TaskQueue) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.run_worker(stop)


async def _run_ecs_worker(app: TaskQueue, args: argparse.Namespace) -> None:
    """Consume the app's stream and queues until SIGTERM/SIGINT, then drain and return."""
    from tq_aws.errors import ConfigurationError
    from tq_aws.runtimes.ecs import EcsWorker

    try:
        worker = EcsWorker(
            app,
            worker_id=args.worker_id,
            lease_seconds=args.lease_seconds,
            renew_every=args.renew_every,
            poll_interval=args.poll_interval,
            sqs_wait_seconds=args.sqs_wait_seconds,
            sqs_visibility_timeout=args.sqs_visibility_timeout,
            heartbeat_every=args.heartbeat_every,
            grace_seconds=args.grace_seconds,
            shard_refresh_seconds=args.shard_refresh_seconds,
            initial_position=args.initial_position,
        )
    except ConfigurationError as exc:
        raise SystemExit(f"tq-aws worker --app {args.app}: {exc} (or use --local)") from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        await worker.run()
    finally:
        await app.aclose()


async def _show_poison(app: TaskQueue, limit: int, *, as_json: bool) -> int:
    """Print the app's kept poison records: a table, or JSON lines."""
    try:
        records = await app.poison_records(limit)
    finally:
        await app.aclose()
    if as_json:
        for record in records:
            print(record.model_dump_json())
        return 0
    if not records:
        print("no poison records")
        return 0
    for record in records:
        preview = record.data[:60].decode("utf-8", "replace").replace("\n", " ")
        print(
            f"{record.seen_at.isoformat(timespec='seconds')}  {record.reason:<15}  "
            f"{record.queue_id} {record.position}  ({len(record.data)} bytes)\n"
            f"    {record.error}\n    data: {preview!r}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tq-aws", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo on the embedded in-memory default")
    demo.add_argument("--fast", action="store_true", help="no pauses between frames")
    worker = sub.add_parser("worker", help="run a worker for an application's TaskQueue")
    worker.add_argument("--app", required=True, help="module:attribute of the TaskQueue")
    worker.add_argument(
        "--local", action="store_true", help="run in-process on the app's memory backends"
    )
    ecs = worker.add_argument_group("AWS worker (without --local)")
    ecs.add_argument("--worker-id", help="lease owner name (default: <host>-<pid>-<ms>)")
    ecs.add_argument("--lease-seconds", type=float, default=10.0, help="lease length (10)")
    ecs.add_argument("--renew-every", type=float, default=3.0, help="lease round period (3)")
    ecs.add_argument(
        "--poll-interval", type=float, default=1.0, help="wait when a shard is caught up (1)"
    )
    ecs.add_argument("--sqs-wait-seconds", type=int, default=20, help="SQS long poll (20)")
    ecs.add_argument(
        "--sqs-visibility-timeout", type=int, default=60, help="SQS visibility, extended (60)"
    )
    ecs.add_argument("--heartbeat-every", type=float, help="visibility extension period")
    ecs.add_argument(
        "--grace-seconds", type=float, default=30.0, help="drain time after SIGTERM (30)"
    )
    ecs.add_argument(
        "--shard-refresh-seconds", type=float, default=30.0, help="shard listing period (30)"
    )
    ecs.add_argument(
        "--initial-position",
        choices=["TRIM_HORIZON", "LATEST"],
        default="TRIM_HORIZON",
        help="where shards without a checkpoint are read from",
    )
    poison = sub.add_parser(
        "poison", help="list the records an app's workers could not decode, newest first"
    )
    poison.add_argument("--app", required=True, help="module:attribute of the TaskQueue")
    poison.add_argument("--limit", type=int, default=20, help="how many records (20)")
    poison.add_argument(
        "--json", action="store_true", help="one JSON object per line, bytes as base64"
    )
    args = parser.parse_args(argv)
    if args.command == "poison":
        return asyncio.run(_show_poison(load_app(args.app), args.limit, as_json=args.json))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "demo":
        from tq_aws.demo import run_demo

        return run_demo(fast=args.fast)
    app = load_app(args.app)
    if args.local:
        asyncio.run(_run_local_worker(app))
    else:
        asyncio.run(_run_ecs_worker(app, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
