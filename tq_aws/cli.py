"""The ``tq-aws`` command: ``demo`` and ``worker``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from tq_aws.engine.app import TaskQueue


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "demo":
        from tq_aws.demo import run_demo

        return run_demo(fast=args.fast)
    app = load_app(args.app)
    asyncio.run(_run_local_worker(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
