"""DynamoDB calls off the event loop: every call runs in a worker thread of one pool shared by
the stores (``in_thread``), and the helpers that run many at once (``gather_all``,
``in_key_order``) or page through a query (``query_all``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tq_aws.backends.aws.dynamodb.models import MAX_CONCURRENCY, TableModels

logger = logging.getLogger(__name__)

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # Our own pool: the loop's default one has min(32, cpus + 4) threads, shared with
            # everything else, which would cap concurrent DynamoDB calls at 6 on two cores.
            _pool = ThreadPoolExecutor(MAX_CONCURRENCY, thread_name_prefix="tq-dynamodb")
        return _pool


async def query_all(
    models: TableModels, pk: str, *, sk_prefix: str | None, requests: Counter[str]
) -> list[dict[str, Any]]:
    """Every item of ``pk`` (with ``sk_prefix``), page by page, strongly consistent; each
    page counts one ``Query`` in ``requests``."""
    raws: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        requests["Query"] += 1
        page, start = await in_thread(
            lambda s=start: models.query_page(pk, sk_prefix=sk_prefix, start=s)
        )
        raws.extend(page)
        if start is None:
            return raws


async def in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run the sync ``fn(*args)`` in a DynamoDB worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args))


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all, concurrently; if any raised, raise the first error once all have ended (so no
    write is left running behind the caller's back)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def in_key_order(keys: Sequence[str], fn: Callable[[int], Awaitable[T]]) -> list[T]:
    """``[await fn(i) for i in range(len(keys))]``, running different keys concurrently and
    the same key in order (a conditional write must see the one before it, as in memory)."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out: dict[int, T] = {}

    async def chain(indexes: list[int]) -> None:
        for i in indexes:
            out[i] = await fn(i)

    await gather_all(chain(indexes) for indexes in groups.values())
    return [out[i] for i in range(len(keys))]
