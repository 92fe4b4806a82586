"""The ECS worker's loop on one SQS queue.

``ReceiveMessage`` with long polling (``sqs_wait_seconds``), one batch prefetched while the
current one runs, the visibility of every message in hand extended every ``heartbeat_every``
seconds (so long tasks are not delivered twice), ``DeleteMessageBatch`` once the batch's
outcomes are recorded, visibility 0 when they could not be. On a stop request, prefetched
messages not yet started go back at once (visibility 0); cancelled at the end of the grace,
everything in hand goes back. A message whose batch could not be recorded and that SQS has
delivered ``max_deliveries`` times (``ApproximateReceiveCount``) is parked in the poison store
and deleted, so its FIFO group moves on; a redrive policy on the queue, if any, should allow
more receives than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tq_aws.backends.aws.clients import AwsClients
from tq_aws.backends.aws.sqs import MAX_BATCH_ENTRIES, SqsSource
from tq_aws.ports import Delivery
from tq_aws.runtimes.ecs.options import WorkerOptions
from tq_aws.runtimes.ecs.stats import WorkerStats
from tq_aws.runtimes.ecs.timing import backoff, pause

if TYPE_CHECKING:
    from tq_aws.engine.engine import Engine

logger = logging.getLogger(__name__)


class SqsConsumer:
    """Consumes one queue until ``draining`` is set (see the module docstring).

    Args:
        app: the engine that runs the batches.
        url: the queue URL.
        clients: AWS clients (SQS).
        options: the worker's options.
        stats: the worker's counters.
        draining: set when the worker stops: no new receives, pauses end at once.
    """

    def __init__(
        self,
        app: Engine,
        url: str,
        *,
        clients: AwsClients,
        options: WorkerOptions,
        stats: WorkerStats,
        draining: asyncio.Event,
    ):
        self.app = app
        self.url = url
        self.clients = clients
        self.options = options
        self.stats = stats
        self._receive_failures = 0
        self.draining = draining

    async def run(self) -> None:
        """Receive, run and delete batches until the worker stops; hand back what is left."""
        url = self.url
        source = SqsSource(
            url,
            self.clients,
            wait_seconds=self.options.sqs_wait_seconds,
            visibility_timeout=self.options.sqs_visibility_timeout,
        )
        in_hand: dict[str, Delivery] = {}
        heartbeat = asyncio.create_task(self._heartbeat(in_hand))
        prefetch: asyncio.Task[list[Delivery]] | None = None
        failures = 0
        try:
            while not self.draining.is_set():
                if prefetch is None:
                    prefetch = asyncio.create_task(self._receive(source, in_hand))
                batch = await prefetch
                prefetch = None
                if self.draining.is_set():
                    await self._hand_back(source, batch, in_hand)
                    break
                if not batch:
                    continue
                # the next batch is received while this one runs (and goes back if unstarted)
                prefetch = asyncio.create_task(self._receive(source, in_hand))
                try:
                    await self.app.processor.process(batch)
                except Exception as exc:
                    failures += 1
                    self.stats.failed_batches += 1
                    logger.warning(
                        "SQS batch of %s not recorded (%s); handed back", url, exc, exc_info=True
                    )
                    batch = await self._park(source, batch, exc, in_hand)
                    await self._hand_back(source, batch, in_hand, count=False)
                    await pause(self.draining, backoff(failures))
                    continue
                failures = 0
                self.stats.batches += 1
                self.stats.records += len(batch)
                try:
                    await source.ack(batch)
                except Exception:
                    logger.warning("deleting messages of %s failed", url, exc_info=True)
                for d in batch:
                    in_hand.pop(d.token, None)
            if prefetch is not None:  # received while the last batch ran: never started
                await self._hand_back(source, await prefetch, in_hand)
                prefetch = None
        except asyncio.CancelledError:
            # The grace is over: what is in hand goes back at once.
            if prefetch is not None:
                prefetch.cancel()
            await self._hand_back(source, list(in_hand.values()), in_hand)
            raise
        finally:
            heartbeat.cancel()

    async def _park(
        self,
        source: SqsSource,
        batch: list[Delivery],
        error: BaseException,
        in_hand: dict[str, Delivery],
    ) -> list[Delivery]:
        """Park (and delete) the messages delivered ``max_deliveries`` times; return the rest,
        to hand back."""
        try:
            parked = await self.app.processor.settle_unrecorded(batch, error)
        except Exception:
            logger.warning("parking messages of %s failed", self.url, exc_info=True)
            return batch
        if not parked:
            return batch
        self.stats.records_parked += len(parked)
        try:
            await source.ack(parked)
        except Exception:  # they come back, and are parked again (the first sighting kept)
            logger.warning("deleting parked messages of %s failed", self.url, exc_info=True)
        done = {id(d) for d in parked}
        for d in parked:
            in_hand.pop(d.token, None)
        return [d for d in batch if id(d) not in done]

    async def _receive(self, source: SqsSource, in_hand: dict[str, Delivery]) -> list[Delivery]:
        try:
            batch = await source.receive(min(self.app.batch_size, MAX_BATCH_ENTRIES))
        except Exception as exc:
            # a queue that keeps failing (deleted, access revoked) is asked less and less often
            self._receive_failures += 1
            delay = max(self.options.poll_interval, backoff(self._receive_failures))
            logger.warning(
                "receiving from %s failed (%s); again in %.1f s",
                source.queue_url,
                exc,
                delay,
                exc_info=True,
            )
            await pause(self.draining, delay)
            return []
        self._receive_failures = 0
        for d in batch:
            in_hand[d.token] = d
        return batch

    async def _hand_back(
        self,
        source: SqsSource,
        batch: Sequence[Delivery],
        in_hand: dict[str, Delivery],
        *,
        count: bool = True,
    ) -> None:
        if not batch:
            return
        try:
            await source.nack(batch)
        except Exception:
            logger.warning("handing messages back to %s failed", source.queue_url, exc_info=True)
        for d in batch:
            in_hand.pop(d.token, None)
        if count:
            self.stats.sqs_handed_back += len(batch)

    async def _heartbeat(self, in_hand: dict[str, Delivery]) -> None:
        url, visibility = self.url, self.options.sqs_visibility_timeout
        while True:
            await asyncio.sleep(self.options.heartbeat)
            held = list(in_hand.values())
            for start in range(0, len(held), MAX_BATCH_ENTRIES):
                chunk = held[start : start + MAX_BATCH_ENTRIES]
                entries = [
                    {"Id": str(i), "ReceiptHandle": d.token, "VisibilityTimeout": visibility}
                    for i, d in enumerate(chunk)
                ]
                try:
                    sqs = await self.clients.get("sqs")
                    response = await sqs.change_message_visibility_batch(
                        QueueUrl=url, Entries=entries
                    )
                except Exception:
                    logger.warning("extending visibility on %s failed", url, exc_info=True)
                    continue
                for failed in response.get("Failed") or []:
                    logger.info("visibility of a message on %s not extended: %s", url, failed)
            if held:
                self.stats.sqs_heartbeats += 1


__all__ = ["SqsConsumer"]
