"""The AWS Lambda runtime: ``handler = app.lambda_handler()``, then ``handler(event, context)``
for the events of a Kinesis or SQS event source mapping (with ``ReportBatchItemFailures``
turned on), returning ``{"batchItemFailures": [...]}``.

Where each part lives
---------------------
- ``handler``: ``LambdaHandler``, the function Lambda calls (options, one invocation).
- ``processor``: ``TaskBatchProcessor``, the Powertools ``BatchProcessor`` subclass that runs
  sub-batches through the engine and reports each record's share.
- ``planning``: the per-key rules (which records a sub-batch holds, what a record is reported
  as), pure functions.
- ``records``: event records -> the engine's deliveries; event checks.
- ``deadline``: the invocation's remaining time and the handed-off tasks' budget.
- ``loop``: the process-wide event loop.
- ``observability``: Powertools Logger, Metrics and Tracer.
- ``powertools_batch``: Powertools batch processing, imported without its parser models.

Nothing is imported here, so ``planning`` and ``records`` load without Powertools.

How an event is run
-------------------
The records are decoded (``records``) and run through the engine (``BatchProcessor.process``)
in **sub-batches** of consecutive records, in record order. The engine works a batch at a time
(it groups tasks by executor, runs batch executors on the whole group, writes outcomes in a few
store calls), so the unit that succeeds or fails is the sub-batch, not the record:

- an executor's own failure is a decision like any other: the task goes to the retry path and
  its record is *not* a batch item failure;
- a task's own data that cannot be run or recorded (``fail(meta=...)`` that is not JSON, a
  value a store refuses) ends that task ``failed`` and the rest is recorded
  (``tq_aws.engine.recording``); it is never reported;
- ``process`` raises only when outcomes could not be recorded (a store or transport write
  failed). Then every record of that sub-batch is reported, so Lambda delivers them again; each
  outcome write is conditional and safe to repeat, so running them again is harmless. A record
  that has failed so ``max_deliveries`` times (not for throttling, timeouts or connections) is
  run alone once more, then parked in the poison store (``BatchProcessor.settle_unrecorded``)
  and is a success: its key moves on.

A KPL aggregate is one event record of many deliveries, one per user record (positions
``<stream>/<shard>/<sequence>/<subSequenceNumber>``); it is reported, by its own sequence
number, when any of them must come again.

This is still Powertools batch processing, not a loop beside it (see ``processor``).

Ordering per key
----------------
Once a record is reported, the later records of the **same key** in the event are not run and
are reported too; other keys keep going. A sub-batch never holds records of one key in an
order the engine's grouping by executor could change (the sub-batch ends there instead).

With Kinesis, Lambda restarts the shard from the **lowest reported sequence number**: every
record after it comes again, including records of other keys that ran and were recorded in this
invocation. For stored tasks the claim drops those duplicates (the stored copy is terminal, so
they do not run twice, and their projection and flow report are written again). Plain tasks
(never stored) run again: delivery is at-least-once, as after any redelivery. With SQS only the
reported messages come back (FIFO groups keep their order, standard queues promise none).

Poison records
--------------
A record that cannot be decoded (not base64, not codec JSON, an unknown codec version, an
invalid task) is kept in the app's poison store (DynamoDB on AWS) with its raw bytes, reason
and position, before anything of its sub-batch runs; it is counted in ``app.stats.poison`` and
reported as a success: it never blocks the records behind it, its key included, and it does not
come back forever. ``tq-aws poison`` and ``app.poison_records()`` list what was kept. Only when
the poison store write itself fails is the record reported, with the rest of its sub-batch.

Time
----
The handler watches ``context.get_remaining_time_in_millis()`` and starts no sub-batch it cannot
finish: it needs the sub-batch's estimate (the slowest time per record of the sub-batches run
so far, times its size, measured on the remaining time itself) plus the margin left: at most
``safety_margin`` seconds and at most ``margin_fraction`` of the time the invocation had at its
start, so the first sub-batch always starts. Records not started are reported (handed back)
before the timeout, so Lambda delivers them again instead of failing the whole batch on a
timeout. A sub-batch is never interrupted:
the margin must cover the variance of one sub-batch.

Executors with ``handoff_timeout`` may leave long tasks running when the last sub-batch is done
(``app.async_tasks``). Their records are already recorded (stored ``processing``, with a
delivery watchdog scheduled after their maximum duration), so the response does not wait for
them; the handler then awaits them until only the margin is left. Whatever still runs is left
to its durable record: when Lambda freezes the process it pauses, it resumes in a later
invocation of the same warm process, and if the process is gone the watchdog delivers the task
again and the claim lets it run (at-least-once).

Process and observability
-------------------------
The handler is a plain function that runs its own event loop: one loop per process
(``process_loop``), reused across invocations while Lambda keeps the process warm, so AWS
clients (cached per loop by ``AwsClients``) and connections are reused. Call it outside any
running loop, as Lambda does, one invocation at a time.

``logger=`` (a Powertools ``Logger``, or ``True`` for one), ``metrics=`` (Powertools
``Metrics``, EMF: ``Processed``, ``Failed``, ``Retried``, ``Poison``, ``Reported`` and
``Duration`` per invocation, from ``app.stats`` deltas) and ``tracer=`` (Powertools ``Tracer``:
a subsegment per invocation and per sub-batch) are each optional. With a logger, the engine's
``tq_aws`` loggers log through its handler too, and every line written while a task runs
carries the task's log context as ``tq_log_context`` (task id, type, queue, worker and the
task's own keys).
"""
