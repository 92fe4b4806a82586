"""Fixtures for tests against moto: nothing here reaches AWS or any address but loopback.

- ``moto``: in-process ``mock_aws`` (with a shim so aioboto3 clients work inside it);
- ``moto_server``: a ``ThreadedMotoServer`` on 127.0.0.1, reset before each test;
- ``serial_moto_server``: a moto server that handles one request at a time, for tests of
  conditional-write races (moto's own server does not make them atomic);
- ``aws_settings`` / ``serial_aws_settings``: ``AwsSettings`` pointed at those servers.

Both servers are ``tq_aws.testing.moto.MotoServer``, shared with the benchmarks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import moto.core  # before any client exists: moto hooks botocore as it is imported
import pytest

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.testing.moto import MotoServer

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def unique(prefix: str) -> str:
    """A fresh resource name (moto slows down as a Kinesis stream grows: one per test)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


_shim_installed = False


def _install_aiobotocore_shim() -> None:
    """Let aiobotocore parse responses that in-process ``mock_aws`` returns synchronously."""
    global _shim_installed
    if _shim_installed:
        return
    import aiobotocore.awsrequest
    import aiobotocore.endpoint
    import botocore.awsrequest
    from botocore.hooks import first_non_none_response

    class _Raw:
        def __init__(self, response: Any):
            self._response = response

        async def read(self, *args: Any) -> bytes:
            return bytes(self._response.content)

    class _MockAWSResponse(aiobotocore.awsrequest.AioAWSResponse):  # type: ignore[misc]
        def __init__(self, response: Any):
            self.status_code = response.status_code
            self.headers = response.headers
            self.url = response.url
            self._content = None
            self.raw = _Raw(response)

    def _wrap(responses: Any) -> Any:
        response = first_non_none_response(responses)
        if isinstance(response, botocore.awsrequest.AWSResponse) and not isinstance(
            response, aiobotocore.awsrequest.AioAWSResponse
        ):
            response = _MockAWSResponse(response)
        return response

    aiobotocore.endpoint.first_non_none_response = _wrap
    _shim_installed = True


@pytest.fixture
def moto() -> Iterator[None]:
    """In-process moto for every service."""
    from moto import mock_aws

    _install_aiobotocore_shim()
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def moto_server(_moto_server: MotoServer) -> str:
    """The endpoint of a moto server on loopback, reset for this test."""
    _moto_server.reset()
    return _moto_server.endpoint


@pytest.fixture(scope="session")
def _serial_moto_server() -> Iterator[MotoServer]:
    with MotoServer(serialize="all") as server:
        yield server


@pytest.fixture
def serial_moto_server(_serial_moto_server: MotoServer) -> str:
    """A moto server that handles one request at a time (atomic conditional writes)."""
    _serial_moto_server.reset()
    return _serial_moto_server.endpoint


@pytest.fixture
def aws_settings(moto_server: str) -> AwsSettings:
    return AwsSettings(region=REGION, endpoint_url=moto_server, max_attempts=1)


@pytest.fixture
def serial_aws_settings(serial_moto_server: str) -> AwsSettings:
    return AwsSettings(region=REGION, endpoint_url=serial_moto_server, max_attempts=1)
