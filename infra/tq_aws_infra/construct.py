"""``TqAws``: the tq-aws stack as one CDK construct, the same resources as ``template.yaml``.

A Kinesis stream (KMS), an optional SQS task queue with its DLQ, one DynamoDB table (tasks,
flows, projections, poison records and shard leases, with the ``recent`` GSI the status page
queries), an S3 claim-check bucket, an EventBridge Scheduler group with the role its schedules
assume and a dead-letter queue, the worker Lambda with its event source mappings, the status
function with a function URL, log groups, alarms, and an optional ECS Fargate worker.

Every IAM statement names its actions and resources; ``*`` appears only for the X-Ray actions,
which AWS offers on no narrower resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tq_aws_infra.findings import acknowledge_findings

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
"""The entry points ``worker.handler`` and ``status.handler`` (the default function code)."""

TABLE_KEYS = ("pk", "sk")
TTL_ATTRIBUTE = "ttl"
RECENT_INDEX = "recent"
RECENT_KEYS = ("recent_pk", "recent_sk")
"""The status page's GSI: failures and flows by time (sparse: only items with ``recent_pk``)."""

VISIBILITY_FACTOR = 6
"""An SQS queue's visibility timeout is at least this many times the consumer's timeout."""
FARGATE_MAX_STOP_TIMEOUT = 120

# X-Ray's segment and sampling actions accept only Resource "*": AWS requires it.
XRAY_ACTIONS = [
    "xray:GetSamplingRules",
    "xray:GetSamplingStatisticSummaries",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
]
STREAM_READ_ACTIONS = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
]
STREAM_WRITE_ACTIONS = ["kinesis:PutRecord", "kinesis:PutRecords"]
QUEUE_CONSUME_ACTIONS = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
]
# A record that keeps failing is parked by the worker after MAX_DELIVERIES deliveries, so the
# event sources must deliver it more often than that before they give up on it themselves.
MAX_DELIVERIES = 10
STREAM_RETRY_ATTEMPTS = 10  # Lambda delivers a Kinesis record 1 + this many times
MAX_RECEIVE_COUNT = 15
WORKER_TABLE_ACTIONS = [
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]
STATUS_TABLE_ACTIONS = [
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]
SCHEDULE_ACTIONS = [
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
]


@dataclass(frozen=True)
class EcsWorkerOptions:
    """The optional ECS Fargate worker (``tq-aws worker``).

    Attributes:
        image: the worker image (built from the repository's ``Dockerfile``).
        vpc: where the tasks run; they need outbound HTTPS to the AWS APIs.
        desired_count: tasks to run.
        grace_seconds: the worker's drain grace after SIGTERM (``--grace-seconds``); the
            container's stop timeout is this plus 20 s, at most Fargate's 120 s.
        cpu, memory_mib: the task's size.
        execution_role: an existing task execution role; by default the task definition makes
            one that writes the logs (and, for an ECR image, that pulls it).
        subnets: which of the VPC's subnets (default: its private ones).
    """

    image: ecs.ContainerImage
    vpc: ec2.IVpc
    desired_count: int = 1
    grace_seconds: int = 30
    cpu: int = 512
    memory_mib: int = 1024
    execution_role: iam.IRole | None = None
    subnets: ec2.SubnetSelection | None = None


class TqAws(Construct):
    """The tq-aws stack: transports, stores, scheduler, worker and status functions.

    Args:
        scope, construct_id: where the construct goes.
        app_spec: ``TQ_APP``, the ``module:attribute`` of the user's ``TaskQueue`` in ``code``.
        code: the functions' code: the entry points of ``lambdas/`` beside the user's module
            (default: the repository's ``lambdas/`` directory).
        stream_mode: ``kinesis.StreamMode.ON_DEMAND`` (default) or ``PROVISIONED``.
        shard_count: shards of a provisioned stream.
        stream_retention: how long the stream keeps records (at least 24 hours).
        maximum_record_age: records older than this go to the stream failure queue; it must
            stay below ``stream_retention``.
        parallelization_factor: concurrent batches per shard (order per partition key is kept).
        enable_sqs: create the SQS task queue (with its DLQ) and its event source.
        sqs_queue_ids: ``TQ_SQS_QUEUES``, the queue ids that travel by SQS.
        sqs_maximum_concurrency: at most this many worker invocations for the queue.
        worker_timeout, worker_memory_mib: the worker function's limits.
        log_retention: retention of the functions' log groups.
        claim_check_expiry: when claim-check objects expire.
        status_url_auth: the status function URL's auth (``AWS_IAM`` by default).
        iterator_age_alarm: alarm threshold on the worker's Kinesis iterator age.
        alarm_topic: an SNS topic the alarms notify.
        ecs_worker: run ``tq-aws worker`` on ECS Fargate as well.

    Example:
        >>> stack = Stack(App(), "Tq")
        >>> tq = TqAws(stack, "Tq", app_spec="myapp.tasks:app")
        >>> tq.stream.stream_name, tq.table.table_name  # tokens, resolved at deploy time
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        app_spec: str = "tasks:app",
        code: lambda_.Code | None = None,
        stream_mode: kinesis.StreamMode = kinesis.StreamMode.ON_DEMAND,
        shard_count: int = 1,
        stream_retention: Duration | None = None,
        maximum_record_age: Duration | None = None,
        parallelization_factor: int = 1,
        enable_sqs: bool = True,
        sqs_queue_ids: str = "",
        sqs_maximum_concurrency: int = 10,
        worker_timeout: Duration | None = None,
        worker_memory_mib: int = 1024,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        claim_check_expiry: Duration | None = None,
        status_url_auth: lambda_.FunctionUrlAuthType = lambda_.FunctionUrlAuthType.AWS_IAM,
        iterator_age_alarm: Duration | None = None,
        alarm_topic: sns.ITopic | None = None,
        ecs_worker: EcsWorkerOptions | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        retention = stream_retention or Duration.hours(24)
        record_age = maximum_record_age or Duration.hours(6)
        timeout = worker_timeout or Duration.minutes(2)
        if record_age.to_seconds() >= retention.to_seconds():
            raise ValueError(
                f"maximum_record_age ({record_age.to_seconds()} s) must stay below "
                f"stream_retention ({retention.to_seconds()} s)"
            )
        self._alarm_topic = alarm_topic
        self.log_groups: list[logs.LogGroup] = []

        # -- transport ---------------------------------------------------------------------
        provisioned = stream_mode == kinesis.StreamMode.PROVISIONED
        self.stream = kinesis.Stream(
            self,
            "TaskStream",
            stream_mode=stream_mode,
            shard_count=shard_count if provisioned else None,
            retention_period=retention,
            encryption=kinesis.StreamEncryption.MANAGED,
        )
        self.queue: sqs.Queue | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        if enable_sqs:
            self.dead_letter_queue = self._queue("TaskDeadLetterQueue")
            self.queue = sqs.Queue(
                self,
                "TaskQueue",
                visibility_timeout=Duration.seconds(VISIBILITY_FACTOR * timeout.to_seconds()),
                retention_period=Duration.days(4),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                dead_letter_queue=sqs.DeadLetterQueue(
                    max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
                ),
            )
        self.stream_failure_queue = self._queue("StreamFailureQueue")
        self.schedule_dead_letter_queue = self._queue("ScheduleDeadLetterQueue")

        # -- stores ------------------------------------------------------------------------
        self.table = dynamodb.Table(
            self,
            "StoreTable",
            partition_key=dynamodb.Attribute(
                name=TABLE_KEYS[0], type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=TABLE_KEYS[1], type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=RECENT_INDEX,
            partition_key=dynamodb.Attribute(
                name=RECENT_KEYS[0], type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=RECENT_KEYS[1], type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.bucket = s3.Bucket(
            self,
            "ClaimCheckBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-claim-checks",
                    expiration=claim_check_expiry or Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # -- scheduler ---------------------------------------------------------------------
        self.schedule_group = scheduler.CfnScheduleGroup(self, "ScheduleGroup")
        deliver = [
            iam.PolicyStatement(
                sid="PutOnStream", actions=["kinesis:PutRecord"], resources=[self.stream.stream_arn]
            ),
            iam.PolicyStatement(
                sid="SendToQueues",
                actions=["sqs:SendMessage"],
                resources=[self.schedule_dead_letter_queue.queue_arn]
                + ([self.queue.queue_arn] if self.queue else []),
            ),
        ]
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            inline_policies={"deliver": iam.PolicyDocument(statements=deliver)},
        )

        # -- functions ---------------------------------------------------------------------
        self.environment = {
            "TQ_APP": app_spec,
            "TQ_STREAM": self.stream.stream_name,
            "TQ_QUEUE_URL": self.queue.queue_url if self.queue else "",
            "TQ_SQS_QUEUES": sqs_queue_ids,
            "TQ_TABLE": self.table.table_name,
            "TQ_BUCKET": self.bucket.bucket_name,
            "TQ_SCHEDULER_GROUP": self.schedule_group.ref,
            "TQ_SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
            "TQ_SCHEDULER_DLQ_ARN": self.schedule_dead_letter_queue.queue_arn,
            "TQ_MAX_DELIVERIES": str(MAX_DELIVERIES),
            "TQ_REGION": Aws.REGION,
            "TQ_ENDPOINT_URL": "",  # only for a local emulator; empty on AWS
        }
        code = code or lambda_.Code.from_asset(
            str(LAMBDAS_DIR), exclude=["__pycache__", "*.pyc", "__init__.py"]
        )
        worker_logs = self._log_group("WorkerLogGroup", log_retention)
        self.worker_role = iam.Role(
            self,
            "WorkerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            inline_policies={
                "worker": iam.PolicyDocument(
                    statements=[
                        self._logs_statement(worker_logs),
                        *self._worker_statements(),
                        iam.PolicyStatement(
                            sid="StreamFailures",
                            actions=["sqs:SendMessage"],
                            resources=[self.stream_failure_queue.queue_arn],
                        ),
                        self._xray_statement(),
                    ]
                )
            },
        )
        self.worker = lambda_.Function(
            self,
            "WorkerFunction",
            description="tq-aws worker (Kinesis and SQS event sources)",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="worker.handler",
            code=code,
            role=self.worker_role.without_policy_updates(),
            memory_size=worker_memory_mib,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=worker_logs,
            environment={
                **self.environment,
                "POWERTOOLS_SERVICE_NAME": "tq-worker",
                "POWERTOOLS_METRICS_NAMESPACE": "tq",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
            },
        )
        self.stream_event_source = lambda_.CfnEventSourceMapping(
            self,
            "WorkerStreamEventSource",
            function_name=self.worker.function_name,
            event_source_arn=self.stream.stream_arn,
            starting_position="TRIM_HORIZON",
            batch_size=100,
            maximum_batching_window_in_seconds=1,
            parallelization_factor=parallelization_factor,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=STREAM_RETRY_ATTEMPTS,
            maximum_record_age_in_seconds=int(record_age.to_seconds()),
            function_response_types=["ReportBatchItemFailures"],
            destination_config=lambda_.CfnEventSourceMapping.DestinationConfigProperty(
                on_failure=lambda_.CfnEventSourceMapping.OnFailureProperty(
                    destination=self.stream_failure_queue.queue_arn
                )
            ),
        )
        self.queue_event_source: lambda_.CfnEventSourceMapping | None = None
        if self.queue is not None:
            self.queue_event_source = lambda_.CfnEventSourceMapping(
                self,
                "WorkerQueueEventSource",
                function_name=self.worker.function_name,
                event_source_arn=self.queue.queue_arn,
                batch_size=10,
                maximum_batching_window_in_seconds=1,
                function_response_types=["ReportBatchItemFailures"],
                scaling_config=lambda_.CfnEventSourceMapping.ScalingConfigProperty(
                    maximum_concurrency=sqs_maximum_concurrency
                ),
            )

        status_logs = self._log_group("StatusLogGroup", log_retention)
        status_statements = [
            self._logs_statement(status_logs),
            iam.PolicyStatement(
                sid="Store",  # reads for the pages; writes for the operator actions
                actions=STATUS_TABLE_ACTIONS,
                resources=self._table_resources(),
            ),
            iam.PolicyStatement(
                sid="Redeliver",
                actions=["kinesis:DescribeStreamSummary", *STREAM_WRITE_ACTIONS],
                resources=[self.stream.stream_arn],
            ),
            *(
                [
                    iam.PolicyStatement(
                        sid="RedeliverQueue",
                        actions=["sqs:GetQueueAttributes", "sqs:SendMessage"],
                        resources=[self.queue.queue_arn],
                    )
                ]
                if self.queue
                else []
            ),
            *self._schedule_statements(),
            *self._claim_check_statements(),
            self._xray_statement(),
        ]
        self.status_role = iam.Role(
            self,
            "StatusRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            inline_policies={"status": iam.PolicyDocument(statements=status_statements)},
        )
        self.status = lambda_.Function(
            self,
            "StatusFunction",
            description="tq-aws status page and API",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="status.handler",
            code=code,
            role=self.status_role.without_policy_updates(),
            memory_size=512,
            timeout=Duration.seconds(30),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=status_logs,
            environment={
                **self.environment,
                "POWERTOOLS_SERVICE_NAME": "tq-status",
                "POWERTOOLS_METRICS_NAMESPACE": "tq",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        self.status_url = self.status.add_function_url(auth_type=status_url_auth)

        # -- alarms ------------------------------------------------------------------------
        self._alarm(
            "WorkerIteratorAgeAlarm",
            "the worker falls behind the stream",
            self._lambda_metric(self.worker, "IteratorAge", "Maximum", Duration.minutes(1)),
            threshold=(iterator_age_alarm or Duration.minutes(1)).to_milliseconds(),
            evaluation_periods=5,
        )
        for name, fn in (("Worker", self.worker), ("Status", self.status)):
            self._alarm(
                f"{name}ErrorsAlarm",
                f"the {name.lower()} function failed",
                self._lambda_metric(fn, "Errors", "Sum", Duration.minutes(5)),
            )
            self._alarm(
                f"{name}ThrottlesAlarm",
                f"the {name.lower()} function is throttled",
                self._lambda_metric(fn, "Throttles", "Sum", Duration.minutes(5)),
            )
        dead_letters = [
            ("StreamFailureAlarm", self.stream_failure_queue),
            ("ScheduleDeadLetterAlarm", self.schedule_dead_letter_queue),
        ]
        if self.dead_letter_queue is not None:
            dead_letters.append(("TaskDeadLetterAlarm", self.dead_letter_queue))
        for alarm_id, queue in dead_letters:
            self._alarm(
                alarm_id,
                "messages reached a dead-letter queue",
                queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=Duration.minutes(5)
                ),
            )

        # -- optional ECS worker -----------------------------------------------------------
        self.ecs_service: ecs.FargateService | None = None
        self.ecs_task_role: iam.Role | None = None
        self.ecs_task_definition: ecs.FargateTaskDefinition | None = None
        if ecs_worker is not None:
            self.ecs_service = self._ecs_worker(ecs_worker, log_retention)
        acknowledge_findings(self)

    # -- pieces ------------------------------------------------------------------------------

    def _queue(self, construct_id: str) -> sqs.Queue:
        """A dead-letter or failure queue: SSE-SQS, SSL only, kept 14 days."""
        return sqs.Queue(
            self,
            construct_id,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )

    def _log_group(self, construct_id: str, retention: logs.RetentionDays) -> logs.LogGroup:
        group = logs.LogGroup(
            self, construct_id, retention=retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.log_groups.append(group)
        return group

    def _table_resources(self) -> list[str]:
        return [self.table.table_arn, f"{self.table.table_arn}/index/*"]

    @staticmethod
    def _logs_statement(group: logs.LogGroup) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[group.log_group_arn],
        )

    @staticmethod
    def _xray_statement() -> iam.PolicyStatement:
        # X-Ray's Put* and GetSampling* actions take only Resource "*" (AWS requires it).
        return iam.PolicyStatement(sid="Tracing", actions=XRAY_ACTIONS, resources=["*"])

    def _schedule_statements(self) -> list[iam.PolicyStatement]:
        group_schedules = (
            f"arn:{Aws.PARTITION}:scheduler:{Aws.REGION}:{Aws.ACCOUNT_ID}:schedule/"
            f"{self.schedule_group.ref}/*"
        )
        return [
            iam.PolicyStatement(
                sid="Schedules", actions=SCHEDULE_ACTIONS, resources=[group_schedules]
            ),
            iam.PolicyStatement(
                sid="PassSchedulerRole",
                actions=["iam:PassRole"],
                resources=[self.scheduler_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            ),
        ]

    def _claim_check_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                sid="ClaimCheckObjects",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
            ),
            # lets a missing object read as "not found" rather than "access denied"
            iam.PolicyStatement(
                sid="ClaimCheckList", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]
            ),
        ]

    def _worker_statements(self) -> list[iam.PolicyStatement]:
        """What a worker (Lambda or ECS) does: read and write the stream and queue, the table
        (the ECS worker's shard leases and checkpoints are items of it too), schedules, the
        claim check."""
        statements = [
            iam.PolicyStatement(
                sid="ReadStream", actions=STREAM_READ_ACTIONS, resources=[self.stream.stream_arn]
            ),
            iam.PolicyStatement(
                sid="WriteStream", actions=STREAM_WRITE_ACTIONS, resources=[self.stream.stream_arn]
            ),
        ]
        if self.queue is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="Queue", actions=QUEUE_CONSUME_ACTIONS, resources=[self.queue.queue_arn]
                )
            )
        statements.append(
            iam.PolicyStatement(
                sid="Store", actions=WORKER_TABLE_ACTIONS, resources=self._table_resources()
            )
        )
        return [*statements, *self._schedule_statements(), *self._claim_check_statements()]

    @staticmethod
    def _lambda_metric(
        fn: lambda_.Function, name: str, statistic: str, period: Duration
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"FunctionName": fn.function_name},
            statistic=statistic,
            period=period,
        )

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cloudwatch.Metric,
        *,
        threshold: float = 0,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self._alarm_topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self._alarm_topic))
        return alarm

    def _ecs_worker(
        self, options: EcsWorkerOptions, retention: logs.RetentionDays
    ) -> ecs.FargateService:
        """``tq-aws worker`` on Fargate: Container Insights, a stop timeout covering the drain
        grace, a task role with the worker's rights (shard leases included)."""
        stop_timeout = options.grace_seconds + 20
        if options.grace_seconds < 0 or stop_timeout > FARGATE_MAX_STOP_TIMEOUT:
            raise ValueError(
                f"grace_seconds={options.grace_seconds}: give 0..{FARGATE_MAX_STOP_TIMEOUT - 20} "
                f"(the stop timeout is the grace plus 20 s, at most {FARGATE_MAX_STOP_TIMEOUT})"
            )
        cluster = ecs.Cluster(
            self,
            "EcsCluster",
            vpc=options.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        task_role = self.ecs_task_role = iam.Role(
            self,
            "EcsTaskRole",
            assumed_by=iam.ServicePrincipal(
                "ecs-tasks.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            inline_policies={
                "worker": iam.PolicyDocument(
                    statements=[
                        *self._worker_statements(),
                        iam.PolicyStatement(  # the shard leases, read 100 at a time
                            sid="Leases",
                            actions=["dynamodb:BatchGetItem"],
                            resources=self._table_resources(),
                        ),
                    ]
                )
            },
        )
        task_definition = self.ecs_task_definition = ecs.FargateTaskDefinition(
            self,
            "EcsTaskDefinition",
            cpu=options.cpu,
            memory_limit_mib=options.memory_mib,
            task_role=task_role.without_policy_updates(),
            execution_role=options.execution_role,
        )
        environment = {k: v for k, v in self.environment.items() if k != "TQ_ENDPOINT_URL"}
        task_definition.add_container(
            "worker",
            image=options.image,
            command=["--grace-seconds", str(options.grace_seconds)],
            environment={**environment, "POWERTOOLS_SERVICE_NAME": "tq-ecs-worker"},
            readonly_root_filesystem=True,
            stop_timeout=Duration.seconds(stop_timeout),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="worker", log_group=self._log_group("EcsLogGroup", retention)
            ),
        )
        return ecs.FargateService(
            self,
            "EcsService",
            cluster=cluster,
            task_definition=task_definition,
            desired_count=options.desired_count,
            min_healthy_percent=0,
            max_healthy_percent=200,
            vpc_subnets=options.subnets,
            assign_public_ip=False,
        )
