"""``tq-aws --version``, the commands ``tq-aws --help`` lists, and the entry points (the
console script and ``python -m tq_aws.cli``)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from tq_aws.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
COMMANDS = ["demo", "worker", "enqueue", "status", "flow", "task", "retry", "cancel", "poison"]


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"tq-aws {VERSION}\n")


def test_the_console_script_and_python_m_run_the_same_command() -> None:
    for command in (
        [str(Path(sys.executable).parent / "tq-aws")],
        [sys.executable, "-m", "tq_aws.cli"],
    ):
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert (done.returncode, done.stdout) == (0, f"tq-aws {VERSION}\n"), done.stderr


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")]
    for name in COMMANDS:
        assert name in listed, result.stdout
    status = CliRunner().invoke(cli, ["status", "--help"]).stdout
    assert "entity" in status and "serve" in status
    assert "redrive" in CliRunner().invoke(cli, ["poison", "--help"]).stdout


def test_main_returns_the_exit_code() -> None:
    assert main(["--version"]) == 0
    assert main(["no-such-command"]) == 2
    assert main(["poison", "--app", "tests.support.poison_app:app", "--limit", "0"]) == 2
