"""The CLI tests' fixtures: Typer's runner, the test app reset per test, and the two places a
command works on: the embedded default (``--app``) and moto (``--aws`` with ``TQ_*`` pointing
at the loopback moto server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.cli import apps
from tests.support.aws import REGION, unique
from tq_aws import TaskQueue
from tq_aws.cli import cli
from tq_aws.cli.loading import resolve_app


@dataclass
class Where:
    """Where the commands of one test work: ``flags`` go on every command line."""

    name: str
    flags: list[str]
    env: dict[str, str] = field(default_factory=dict)
    runner: CliRunner = field(default_factory=CliRunner)
    worker: TaskQueue | None = None

    @property
    def aws(self) -> bool:
        return self.name == "aws"

    def invoke(self, *args: str, input: str | None = None) -> Result:
        result = self.runner.invoke(cli, [*args, *self.flags], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.invoke(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def app(self) -> TaskQueue:
        """The test app as the commands see it (on moto: its executors on the TQ_* ports)."""
        return resolve_app(apps.SPEC, self.aws)

    def run(self) -> int:
        """Run every due task, as one worker that lives through the test would (on moto it
        goes on reading the stream where it stopped)."""
        if self.worker is None:
            self.worker = apps.app if not self.aws else apps.register(TaskQueue.from_env())
        queue = self.worker

        async def go() -> int:
            try:
                return await queue.run_until_idle()
            finally:
                await queue.aclose()

        return asyncio.run(go())


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    apps.reset()
    yield
    apps.reset()


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "TQ_STREAM": unique("cli-tasks"),
        "TQ_TABLE": unique("cli-table"),
        "TQ_ENDPOINT_URL": endpoint,
        "TQ_REGION": REGION,
    }


def ensure(queue: TaskQueue) -> None:
    async def go() -> None:
        try:
            await queue.ensure_resources()
        finally:
            await queue.aclose()

    asyncio.run(go())


@pytest.fixture
def on_aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Where:
    """Commands with ``--aws`` on a moto server whose resources exist."""
    env = aws_env(moto_server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    where = Where("aws", ["--app", apps.SPEC, "--aws"], env)
    ensure(where.app())
    apps.reset()
    return where


@pytest.fixture
def on_memory() -> Where:
    """Commands on the test app's embedded default (it lives on between invocations)."""
    return Where("memory", ["--app", apps.SPEC])


@pytest.fixture(params=["memory", "aws"])
def where(request: pytest.FixtureRequest) -> Where:
    """Each test twice: on the embedded default and on moto."""
    found: Where = request.getfixturevalue(f"on_{request.param}")
    return found
