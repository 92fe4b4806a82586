// A producer in another language: puts tq-aws task records (schemas/task-record.v1.json) on a
// Kinesis stream and SQS queues with the AWS SDK for JavaScript v3, as a TypeScript service
// that adds tasks would. docs/wire-format.md describes every byte written here.
//
// Configured by the environment (the test passes a moto server on 127.0.0.1 and dummy
// credentials): TQ_ENDPOINT_URL, TQ_REGION, TQ_STREAM, TQ_QUEUE_URL, TQ_FIFO_QUEUE_URL,
// TQ_BUCKET. Prints one JSON line per record it put: {transport, id, key}.
import { deflateSync } from "node:zlib";
import { randomUUID } from "node:crypto";
import { KinesisClient, PutRecordCommand, PutRecordsCommand } from "@aws-sdk/client-kinesis";
import { SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { S3Client, PutObjectCommand } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const endpoint = env("TQ_ENDPOINT_URL");
const region = env("TQ_REGION");
const common = { endpoint, region, maxAttempts: 1 };
// The Kinesis client speaks HTTP/2 by default; an emulator on plain HTTP needs HTTP/1.1.
const kinesis = new KinesisClient({ ...common, requestHandler: new NodeHttpHandler() });
const sqs = new SQSClient(common);
const s3 = new S3Client({ ...common, forcePathStyle: true });

const now = new Date().toISOString(); // UTC, with its "Z"
const put = (transport, id, key) => console.log(JSON.stringify({ transport, id, key }));

// One record: {"v": 1, "task": {...}} as UTF-8 JSON. `id` should be unique; `created_at`
// lets the consumer fill in execute_at and updated_at, as tq-aws's own producers do.
function record(task) {
  return { v: 1, task: { id: randomUUID(), created_at: now, ...task } };
}
const bytes = (rec) => Buffer.from(JSON.stringify(rec), "utf8");

// -- Kinesis -----------------------------------------------------------------------------
const stream = env("TQ_STREAM");

// Records of one partition key, in order: one PutRecord after another, each naming the
// sequence number of the one before (SequenceNumberForOrdering), so a retry never reorders.
let previous;
for (let step = 1; step <= 3; step++) {
  const rec = record({
    type: "ship",
    queue_id: "orders",
    payload: { order: "o-1", step },
    partition_key: "order-o-1",
    entity: { id: "o-1", type: "order" },
    metadata: { log_context: { source: "node" } },
  });
  const out = await kinesis.send(
    new PutRecordCommand({
      StreamName: stream,
      PartitionKey: rec.task.partition_key,
      Data: bytes(rec),
      SequenceNumberForOrdering: previous,
    }),
  );
  previous = out.SequenceNumber;
  put("kinesis", rec.task.id, rec.task.partition_key);
}

// Records of distinct keys go in one PutRecords call (up to 500 records / 5 MiB). With no
// partition_key in the task, the key is the task's id, as tq-aws keys them.
const many = [1, 2, 3, 4].map((n) =>
  record({ type: "ship", queue_id: "orders", payload: { order: `o-${n + 1}`, step: 1 } }),
);
// A compressed record: zlib (its first byte is 0x78; JSON's is "{"), nothing else changes.
const packed = record({
  type: "ship",
  queue_id: "orders",
  payload: { order: "o-big", step: 1, note: "x".repeat(2000) },
});
const entries = [
  ...many.map((r) => ({ PartitionKey: r.task.id, Data: bytes(r) })),
  { PartitionKey: packed.task.id, Data: deflateSync(bytes(packed)) },
];
const batch = await kinesis.send(new PutRecordsCommand({ StreamName: stream, Records: entries }));
if (batch.FailedRecordCount) throw new Error(`PutRecords failed: ${JSON.stringify(batch)}`);
for (const r of [...many, packed]) put("kinesis", r.task.id, r.task.id);

// A payload too large for a record: the JSON in S3 under the app's bucket (prefix tq/), and
// the claim-check marker {"$tq_blob": "s3://bucket/key", "size": bytes} in its place.
const bucket = env("TQ_BUCKET");
const large = record({ type: "ship", queue_id: "orders", partition_key: "order-o-large" });
const body = Buffer.from(JSON.stringify({ order: "o-large", step: 1, lines: 5000 }), "utf8");
const key = `tq/payloads/${large.task.id}`;
await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
large.task.payload = { $tq_blob: `s3://${bucket}/${key}`, size: body.length };
await kinesis.send(
  new PutRecordCommand({ StreamName: stream, PartitionKey: "order-o-large", Data: bytes(large) }),
);
put("kinesis", large.task.id, "order-o-large");

// -- SQS -------------------------------------------------------------------------------------
// A standard queue: the body is the record's JSON text, or base64 of its bytes when they are
// compressed (JSON starts with "{", base64 never does).
const queueUrl = env("TQ_QUEUE_URL");
const mail = [1, 2].map((n) => record({ type: "send", queue_id: "emails", payload: { n } }));
const mailPacked = record({ type: "send", queue_id: "emails", payload: { n: 3 } });
await sqs.send(
  new SendMessageBatchCommand({
    QueueUrl: queueUrl,
    Entries: [
      ...mail.map((r, i) => ({ Id: `m${i}`, MessageBody: JSON.stringify(r) })),
      { Id: "packed", MessageBody: deflateSync(bytes(mailPacked)).toString("base64") },
    ],
  }),
);
for (const r of [...mail, mailPacked]) put("sqs", r.task.id, null);

// A FIFO queue: MessageGroupId is the partition key (else the id), MessageDeduplicationId
// "<id>.a0" (the first attempt), one message after another within a group.
const fifoUrl = env("TQ_FIFO_QUEUE_URL");
for (let step = 1; step <= 3; step++) {
  const rec = record({
    type: "charge",
    queue_id: "billing",
    payload: { account: "a-1", step },
    partition_key: "account-a-1",
  });
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: fifoUrl,
      MessageBody: JSON.stringify(rec),
      MessageGroupId: rec.task.partition_key,
      MessageDeduplicationId: `${rec.task.id}.a0`,
    }),
  );
  put("sqs-fifo", rec.task.id, rec.task.partition_key);
}
