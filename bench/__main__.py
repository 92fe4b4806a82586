"""Run every benchmark in this folder: each module with a ``main(argv) -> int``.

``python -m bench`` runs them at full size; ``python -m bench --quick`` runs a smoke-sized pass;
``--only NAME`` runs one module. Each module also runs alone: ``python -m bench.<name> --help``.
At the end it prints the rows every module reported (``bench._rounds.report``) as one table:
each measure, its median, CPU-time ratio, spread, target and verdict.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

import bench
from bench._rounds import ROWS, describe_machine, render_table


def benchmark_names() -> list[str]:
    """Modules of this package that are benchmarks (not private, not this runner)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(bench.__path__)
        if not info.name.startswith("_") and not info.ispkg
    )


def main(argv: Sequence[str] | None = None) -> int:
    names = benchmark_names()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs")
    parser.add_argument("--only", choices=names, action="append", help="run only this benchmark")
    args = parser.parse_args(argv)
    status = 0
    for name in args.only or names:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench.{name} ==", flush=True)
        status = max(status, int(run(["--quick"] if args.quick else [])))
        print(flush=True)
    if ROWS:
        print("== the performance table ==")
        print(describe_machine())
        print(render_table(ROWS), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
