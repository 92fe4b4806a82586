"""AWS clients shared by the AWS backends: one aioboto3 session, async clients cached per event
loop (an aiobotocore client cannot cross loops), and sync boto3 clients for sync paths.

The SDKs are imported when the first client is asked for, not with this module: a Lambda
consumer that never sends (no child task, no retry) never loads aioboto3, aiobotocore and
aiohttp, the largest part of a cold start."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.config import Config


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Where and how to reach AWS.

    Args:
        region: the AWS region.
        endpoint_url: a single endpoint for every service (a local emulator such as moto);
            ``None`` for AWS itself.
        max_attempts: botocore's attempts per request (standard retry mode), throttling included.
        connect_timeout, read_timeout: seconds.
    """

    region: str = "us-east-1"
    endpoint_url: str | None = None
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def botocore_config(self) -> Config:
        from botocore.config import Config

        return Config(
            region_name=self.region,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )

    @property
    def is_local(self) -> bool:
        """Whether the endpoint is on this machine (an emulator, for development and tests)."""
        if not self.endpoint_url:
            return False
        host = self.endpoint_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        return host in ("localhost", "[::1]", "::1") or host.startswith("127.")


class AwsClients:
    """Lazily created clients: ``await clients.get("kinesis")`` (async, aioboto3) and
    ``clients.sync("dynamodb")`` (boto3). Close with ``await clients.aclose()``."""

    def __init__(self, settings: AwsSettings):
        self.settings = settings
        self._session: Any = None
        self._config_made: Config | None = None
        self._async: dict[tuple[int, str], Any] = {}
        self._stacks: dict[int, contextlib.AsyncExitStack] = {}
        self._sync: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def get(self, service: str) -> Any:
        """The async client for ``service`` on the running event loop."""
        loop_id = id(asyncio.get_running_loop())
        client = self._async.get((loop_id, service))
        if client is None:
            if self._session is None:
                import aioboto3  # the first async client: see the module docstring

                self._session = aioboto3.Session(region_name=self.settings.region)
            stack = self._stacks.setdefault(loop_id, contextlib.AsyncExitStack())
            client = await stack.enter_async_context(
                self._session.client(
                    service, endpoint_url=self.settings.endpoint_url, config=self._config
                )
            )
            self._async[(loop_id, service)] = client
        return client

    def sync(self, service: str) -> Any:
        """The boto3 client for ``service`` (thread-safe to share)."""
        with self._lock:
            client = self._sync.get(service)
            if client is None:
                import boto3

                client = boto3.client(
                    service,
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_url,
                    config=self._config,
                )
                self._sync[service] = client
            return client

    @property
    def _config(self) -> Config:
        if self._config_made is None:
            self._config_made = self.settings.botocore_config()
        return self._config_made

    async def aclose(self) -> None:
        """Close the async clients of the running loop."""
        loop_id = id(asyncio.get_running_loop())
        stack = self._stacks.pop(loop_id, None)
        for key in [k for k in self._async if k[0] == loop_id]:
            del self._async[key]
        if stack is not None:
            await stack.aclose()


# -- error codes ----------------------------------------------------------------------------

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceeded",
        "ThrottlingException",
        "ThrottlingError",
        "Throttling",
        "RequestThrottled",
        "KMSThrottlingException",
        "LimitExceededException",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
"""Codes that mean "slow down": the request was refused for rate, not for its content."""

RETRYABLE_CALL_CODES = THROTTLING_CODES | frozenset(
    {
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
    }
)
"""Call-level codes worth retrying: throttling and transient service faults. Other errors
(validation, a missing stream or queue, access) will not pass on a retry."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_throttling(exc: BaseException) -> bool:
    """Whether ``exc`` is AWS refusing a request for rate (retry later, not a failure)."""
    return error_code(exc) in THROTTLING_CODES
