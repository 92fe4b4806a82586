"""Every ``tq-aws`` command line in the docs names commands and options that exist: each one is
parsed with ``--help`` added (an unknown command or option fails the parse)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tq_aws.cli import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "reference" / "cli.md"]
SHELL = re.compile(r"```sh\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"`(tq-aws [^`]*)`")


def command_lines() -> list[str]:
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = [b.splitlines() for b in SHELL.findall(text)]
        for line in [line for block in blocks for line in block] + INLINE.findall(text):
            line = line.split(" #")[0].split("|")[-1].strip()
            if line.startswith("tq-aws ") and not line.split()[1].isupper():
                found.append(line)
    return sorted(set(found))


def test_the_pages_have_command_lines() -> None:
    lines = command_lines()
    for command in ("worker", "enqueue", "status", "flow", "task", "retry", "cancel", "poison"):
        assert any(line.split()[1] == command for line in lines), command


@pytest.mark.parametrize("line", command_lines())
def test_a_documented_command_line_parses(line: str) -> None:
    args = shlex.split(line)[1:]
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"{line}\n{result.output}"
