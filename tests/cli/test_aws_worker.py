"""``tq-aws worker`` on AWS (moto on loopback), in a real process: it checks its credentials and
resources before it starts and exits non-zero naming what is missing; a failure that repeats
every round is one line each time after its first traceback."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.cli.conftest import aws_env, ensure
from tests.support.aws import REGION
from tq_aws import TaskQueue

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0
"""Seconds a step may take before the test gives up (a safety net, not a measurement)."""
WORKER = [sys.executable, "-m", "tq_aws.cli", "worker", "--app", "tests.cli.apps:app", "--aws"]


def environment(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**os.environ, **env, "PYTHONPATH": str(ROOT), **extra}


def test_missing_resources_are_named_and_the_worker_exits_1(moto_server: str) -> None:
    env = aws_env(moto_server)
    done = subprocess.run(
        WORKER, env=environment(env), cwd=ROOT, capture_output=True, text=True, timeout=LIMIT
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    start = lines.index(
        f"tq-aws worker: cannot start on AWS (region {REGION}, endpoint {moto_server}):"
    )
    problems = lines[start + 1 :]
    assert [p.split(":")[0] for p in problems] == [
        f"  - DynamoDB table '{env['TQ_TABLE']}'",
        f"  - Kinesis stream '{env['TQ_STREAM']}'",
        "  - EventBridge Scheduler group 'tq'",
    ]
    assert all("ResourceNotFoundException" in p and "deploy the stack" in p for p in problems)
    assert "Traceback" not in done.stderr


def test_without_credentials_the_worker_says_so_and_exits_1(
    moto_server: str, tmp_path: Path
) -> None:
    env = environment(
        aws_env(moto_server),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    done = subprocess.run(WORKER, env=env, cwd=ROOT, capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "  - AWS credentials: Unable to locate credentials; give the worker credentials (a task "
        "role, AWS_PROFILE or AWS_ACCESS_KEY_ID)"
    )


def wait_for(proc: subprocess.Popen[str], stderr: Path, what: str, check: object) -> str:
    deadline = time.monotonic() + LIMIT
    while True:
        text = stderr.read_text(errors="replace")
        if callable(check) and check(text):
            return text
        if proc.poll() is not None:
            pytest.fail(f"the worker exited before {what}:\n{text}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}:\n{text}")
        time.sleep(0.05)


def test_a_failure_every_round_shows_its_traceback_once(moto_server: str, tmp_path: Path) -> None:
    env = aws_env(moto_server)
    os.environ.update(env)  # for ensure(); the process gets them below
    try:
        ensure(TaskQueue.from_env())
    finally:
        for key in env:
            os.environ.pop(key, None)
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*WORKER, "--worker-id", "W", "--renew-every", "0.2", "--grace-seconds", "5"],
            env=environment(env),
            cwd=ROOT,
            stderr=err,
            text=True,
        )
    try:
        wait_for(proc, stderr, "the worker to start", lambda t: "worker W started" in t)
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
        dynamodb.delete_table(TableName=env["TQ_TABLE"])  # every lease round fails from now on
        failing = "WARNING tq_aws.runtimes.ecs.shard_leases lease round of worker W failed"
        wait_for(proc, stderr, "four failed rounds", lambda t: t.count(failing) >= 4)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=LIMIT)
    text = stderr.read_text(errors="replace")
    rounds = [line for line in text.splitlines() if failing in line]
    lines = text.splitlines()
    with_traceback = [
        line for line, following in itertools.pairwise(lines) if following.startswith("Traceback")
    ]
    # one traceback per kind of error (while the table is being deleted, then once it is
    # gone), then one line a round naming the error
    shown = [line for line in with_traceback if failing in line]
    assert 1 <= len(shown) <= 2
    assert shown == rounds[: len(shown)]
    repeats = rounds[len(shown) :]
    assert len(repeats) >= 2
    assert all(
        r.endswith("; traceback shown once above]") and "ResourceNotFoundException" in r
        for r in repeats
    )
    # leases taken before the table went fail their renewals too: at most one traceback per
    # kind of error for all the shards
    assert len([line for line in with_traceback if "renewing the lease of" in line]) <= 2


def test_a_queue_that_keeps_failing_is_asked_less_and_less_often(
    moto_server: str, tmp_path: Path
) -> None:
    env = aws_env(moto_server)
    del env["TQ_STREAM"]
    env["TQ_QUEUE_URL"] = f"{moto_server}/123456789012/{env['TQ_TABLE']}-q"
    os.environ.update(env)
    try:
        ensure(TaskQueue.from_env())
    finally:
        for key in env:
            os.environ.pop(key, None)
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*WORKER, "--poll-interval", "0.05", "--sqs-wait-seconds", "1"],
            env=environment(env),
            cwd=ROOT,
            stderr=err,
            text=True,
        )
    failing = "receiving from " + env["TQ_QUEUE_URL"] + " failed"
    try:
        wait_for(proc, stderr, "the worker to start", lambda t: " started: " in t)
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
        sqs.delete_queue(QueueUrl=env["TQ_QUEUE_URL"])
        wait_for(proc, stderr, "four failed receives", lambda t: t.count(failing) >= 4)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=LIMIT)
    lines = stderr.read_text(errors="replace").splitlines()
    receives = [line for line in lines if failing in line]
    delays = [float(line.split("; again in ")[1].split(" s")[0]) for line in receives]
    # backoff doubles from 0.5 s (with jitter: half to all of it) instead of every poll
    assert delays[:4] == sorted(delays[:4])
    assert delays[3] > 0.5 >= delays[0]
    assert all(line.endswith("traceback shown once above]") for line in receives[1:])
