"""``tq-aws status serve`` in a real process: the status API on 127.0.0.1 at the URL it prints,
the token required when one is given, stopped by SIGTERM; on the embedded default (the
serving process's own app) and on moto (rows another process wrote)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import Where
from tq_aws.cli import cli

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0
TOKEN = "s3cret"


def get(url: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=LIMIT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, None


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tq_aws.cli", "status", "serve", "--port", "0", *args],
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "TQ_STATUS_TOKEN": TOKEN},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def url_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    prefix = "tq-aws status serve: "
    if not banner.startswith(prefix):
        proc.kill()
        pytest.fail(f"no banner: {banner!r}\n{proc.communicate(timeout=LIMIT)[1]}")
    url = banner[len(prefix) :].split()[0]
    assert url.startswith("http://127.0.0.1:")
    assert "(token required)" in banner
    return url


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=LIMIT)
    assert proc.returncode == 0
    return out


def test_serves_the_embedded_default_with_a_token() -> None:
    proc = serve("--app", "tests.cli.serve_app:app")
    try:
        url = url_of(proc)
        status, document = get(f"{url}/entities/customer/c-1")
        assert status == 200
        rows = {r["task_id"]: r["status"] for r in document["tasks"]}
        assert rows == {"m-sent": "executed", "m-bounced": "failed"}
        assert get(f"{url}/entities/customer/c-1", token=None)[0] == 401
        assert get(f"{url}/tasks/m-bounced")[1]["status"] == "failed"
    finally:
        if proc.poll() is None:
            out = stop(proc)
            assert out.splitlines()[-1] == "tq-aws status serve: stopped"


def test_serves_what_is_on_aws(on_aws: Where) -> None:
    [task_id] = on_aws.ok(
        "enqueue", "-q", "mail", "-t", "bounce", "--entity", "customer:c-7"
    ).stdout.split()
    on_aws.run()
    proc = serve("--app", "tests.cli.apps:app", "--aws", env=on_aws.env)
    try:
        url = url_of(proc)
        status, document = get(f"{url}/entities/customer/c-7")
        assert status == 200
        assert [(r["task_id"], r["status"]) for r in document["tasks"]] == [(task_id, "failed")]
    finally:
        if proc.poll() is None:
            stop(proc)


def test_beyond_loopback_a_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQ_STATUS_TOKEN", raising=False)
    result = CliRunner().invoke(
        cli, ["status", "serve", "--app", "tests.cli.apps:app", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "tq-aws: status serve --host 0.0.0.0: give --token (or TQ_STATUS_TOKEN) to listen "
        "beyond this machine"
    ]
