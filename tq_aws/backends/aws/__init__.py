"""AWS backends: Kinesis and SQS transports, DynamoDB stores (pynamodb), EventBridge
Scheduler, S3 claim check. Imported only when an AWS TaskQueue is built."""
