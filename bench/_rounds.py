"""What the benchmarks share: paired rounds and their medians, spreads and CPU-time ratios,
the machine's load, and the rows of the performance table that ``python -m bench`` prints
once every benchmark has run.

A *round* runs both sides of a comparison once, one right after the other, and every other
round starts with the other side; a round's ratio compares its two runs, so a machine whose
speed drifts (other processes starting and stopping) moves both sides of each ratio. A target
is judged on the median of the rounds' ratios; the spread (lowest and highest round) says how
far one run could mislead. The CPU-time ratio (``time.process_time``, every thread of the
process; or the child's user + system time) moves much less than wall time when other
processes share the machine, so it is printed beside the wall-time one.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

MIN_ROUNDS = 5
"""The fewest rounds a figure of the table is judged on."""


class Timing(NamedTuple):
    """One measured run: wall-clock seconds and CPU seconds."""

    wall: float
    cpu: float


def timed(run: Callable[[], T]) -> tuple[Timing, T]:
    """Run ``run`` after a garbage collection; its wall and CPU time, and what it returned."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


@dataclass(slots=True)
class Paired:
    """The two sides' timings, round by round (``tq[i]`` and ``base[i]`` ran back to back)."""

    tq: list[Timing] = field(default_factory=list)
    base: list[Timing] = field(default_factory=list)

    def add(self, tq: Timing, base: Timing) -> None:
        self.tq.append(tq)
        self.base.append(base)

    @property
    def rounds(self) -> int:
        return len(self.tq)

    def ratios(self) -> list[float]:
        """Each round's tq-aws / baseline wall time."""
        return [t.wall / b.wall for t, b in zip(self.tq, self.base, strict=True)]

    def cpu_ratios(self) -> list[float]:
        """Each round's tq-aws / baseline CPU time."""
        return [t.cpu / b.cpu for t, b in zip(self.tq, self.base, strict=True) if b.cpu > 0]

    def ratio(self) -> float:
        """The median of the rounds' wall-time ratios (tq-aws / baseline: lower is faster)."""
        return statistics.median(self.ratios())

    def cpu_ratio(self) -> float:
        ratios = self.cpu_ratios()
        return statistics.median(ratios) if ratios else float("nan")

    def spread(self) -> tuple[float, float]:
        ratios = self.ratios()
        return min(ratios), max(ratios)

    def speedup(self) -> float:
        """The median of the rounds' baseline / tq-aws wall time (higher is faster)."""
        return statistics.median(1 / r for r in self.ratios())

    def cpu_speedup(self) -> float:
        ratios = self.cpu_ratios()
        return statistics.median(1 / r for r in ratios) if ratios else float("nan")

    def speedup_spread(self) -> tuple[float, float]:
        low, high = self.spread()
        return 1 / high, 1 / low


def alternate(rounds: int, tq: Callable[[], Timing], base: Callable[[], Timing]) -> Paired:
    """``rounds`` rounds of both sides, every other one starting with the baseline."""
    paired = Paired()
    for round_ in range(rounds):
        if round_ % 2 == 0:
            t = tq()
            b = base()
        else:
            b = base()
            t = tq()
        paired.add(t, b)
    return paired


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or ``unknown``."""
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "unknown"


# -- the performance table ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the performance table.

    Attributes:
        measure: what is compared.
        value: the judged figure (a median ratio, seconds, dollars).
        cpu: the CPU-time ratio beside it (``""`` when not timed).
        spread: the lowest and highest round (``""`` when counted, not timed).
        target: the target, as the issue states it.
        met: whether the median meets it (``None``: nothing to judge).
        note: rounds, sizes, what else to know.
    """

    measure: str
    value: str
    cpu: str
    spread: str
    target: str
    met: bool | None
    note: str = ""

    def verdict(self) -> str:
        return "-" if self.met is None else ("met" if self.met else "NOT met")


ROWS: list[Row] = []
"""Rows reported in this process, in order (``python -m bench`` prints them at the end)."""


def report(row: Row) -> Row:
    """Print ``row`` as the benchmark's verdict line and keep it for the final table."""
    ROWS.append(row)
    cpu = f", CPU {row.cpu}" if row.cpu else ""
    spread = f", spread {row.spread}" if row.spread else ""
    note = f" ({row.note})" if row.note else ""
    print(f"target {row.target}: {row.verdict()}: {row.measure} {row.value}{cpu}{spread}{note}")
    return row


def ratio_row(
    measure: str,
    paired: Paired,
    target: str,
    met: Callable[[float], bool],
    *,
    speed: bool = False,
    note: str = "",
) -> Row:
    """A row judged on the median ratio of ``paired`` (``speed``: baseline / tq-aws)."""
    if speed:
        value, cpu, (low, high) = paired.speedup(), paired.cpu_speedup(), paired.speedup_spread()
    else:
        value, cpu, (low, high) = paired.ratio(), paired.cpu_ratio(), paired.spread()
    rounds = f"median of {paired.rounds} paired rounds"
    return Row(
        measure=measure,
        value=f"{value:.2f}x",
        cpu=f"{cpu:.2f}x",
        spread=f"{low:.2f}-{high:.2f}x",
        target=target,
        met=met(value),
        note=f"{rounds}; {note}" if note else rounds,
    )


def render_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (what ``python -m bench`` ends with)."""
    lines = [
        "| measure | median | CPU ratio | spread | target | verdict | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.measure} | {r.value} | {r.cpu or '-'} | {r.spread or '-'} | {r.target} "
            f"| {r.verdict()} | {r.note} |"
        )
    return "\n".join(lines)


def describe_machine() -> str:
    import platform

    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s), load average {load_average()}"
    )


__all__: list[Any] = [
    "MIN_ROUNDS",
    "ROWS",
    "Paired",
    "Row",
    "Timing",
    "alternate",
    "describe_machine",
    "load_average",
    "ratio_row",
    "render_table",
    "report",
    "timed",
]
