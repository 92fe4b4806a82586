"""docs/reference/environment.md lists every ``TQ_*`` variable the library, the entry points
and the templates read, and names none that nothing reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "environment.md"
SOURCES = [
    *(ROOT / "tq_aws").rglob("*.py"),
    *(ROOT / "lambdas").rglob("*.py"),
    *(ROOT / "infra" / "tq_aws_infra").rglob("*.py"),
    ROOT / "template.yaml",
    ROOT / "Dockerfile",
]
NAME = re.compile(r"\bTQ_[A-Z][A-Z_]*[A-Z]\b")
# settings_from_env reads TQ_ + NAME through a helper: get("STREAM"), get("QUEUE_URL")...
PREFIXED = re.compile(r'(?<![.\w])get\("([A-Z][A-Z_]*)"\)')
FACTORY = ROOT / "tq_aws" / "backends" / "aws" / "env.py"


def read_by_code() -> set[str]:
    names = {n for path in SOURCES for n in NAME.findall(path.read_text())}
    names |= {f"TQ_{n}" for n in PREFIXED.findall(FACTORY.read_text())}
    return names


def documented() -> set[str]:
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `TQ_")]
    return {NAME.findall(row)[0] for row in rows}


def test_every_variable_the_code_reads_has_a_row() -> None:
    missing = read_by_code() - documented()
    assert not missing, f"add rows for {sorted(missing)} to {PAGE.relative_to(ROOT)}"


def test_every_row_is_a_variable_the_code_reads() -> None:
    stale = documented() - read_by_code()
    assert not stale, f"{sorted(stale)} in {PAGE.relative_to(ROOT)} are read by nothing"


def test_the_settings_helper_is_still_found() -> None:
    assert {"TQ_STREAM", "TQ_TABLE", "TQ_SCHEDULER_ROLE_ARN"} <= {
        f"TQ_{n}" for n in PREFIXED.findall(FACTORY.read_text())
    }
