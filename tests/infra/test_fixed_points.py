"""The properties every deploy of tq-aws keeps, checked on both templates: the SAM template
after its transform with every parameter at its default, and the CDK app's synth."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.templates import Template, iter_policy_documents, listed
from tq_aws.backends.aws.factory import settings_from_env

# X-Ray's Put*/GetSampling* and cloudwatch:PutMetricData take no narrower resource.
STAR_ALLOWED = ("xray:Put", "xray:GetSampling", "cloudwatch:PutMetricData")
FROM_ENV_NAMES = {
    "TQ_STREAM",
    "TQ_QUEUE_URL",
    "TQ_SQS_QUEUES",
    "TQ_TABLE",
    "TQ_BUCKET",
    "TQ_SCHEDULER_GROUP",
    "TQ_SCHEDULER_ROLE_ARN",
    "TQ_SCHEDULER_DLQ_ARN",
    "TQ_REGION",
    "TQ_ENDPOINT_URL",
}


@pytest.fixture(params=["sam", "cdk"])
def template(request: pytest.FixtureRequest) -> Template:
    doc: dict[str, Any] = request.getfixturevalue(f"{request.param}_template")
    return Template(doc)


def test_the_names_from_env_reads_are_the_ones_listed_here() -> None:
    env = {name: f"x-{name.lower()}" for name in FROM_ENV_NAMES}
    env["TQ_SQS_QUEUES"] = "a,b"
    settings = settings_from_env(env)
    assert settings is not None
    read = {k for k, v in settings.items() if v not in (None, "tq", "us-east-1")}
    assert len(read) == len(FROM_ENV_NAMES)


def test_tables_are_on_demand_recoverable_encrypted_with_ttl_and_a_gsi(template: Template) -> None:
    tables = template.of_type("AWS::DynamoDB::Table")
    assert tables
    for props in tables.values():
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
        assert {(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]} == {
            ("pk", "HASH"),
            ("sk", "RANGE"),
        }
        [gsi] = props["GlobalSecondaryIndexes"]
        assert gsi["IndexName"] == "recent"
        assert [(k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"]] == [
            ("recent_pk", "HASH"),
            ("recent_sk", "RANGE"),
        ]


def test_the_stream_is_kms_encrypted(template: Template) -> None:
    [stream] = template.of_type("AWS::Kinesis::Stream").values()
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"


def test_buckets_are_encrypted_private_ssl_only_and_the_claim_check_expires(
    template: Template,
) -> None:
    buckets = template.of_type("AWS::S3::Bucket")
    assert len(buckets) == 1
    for name, props in buckets.items():
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        [rule] = props["LifecycleConfiguration"]["Rules"]
        assert rule["Status"] == "Enabled" and int(rule["ExpirationInDays"]) > 0
        policies = [
            p
            for n, p in template.of_type("AWS::S3::BucketPolicy").items()
            if template.raw(n)["Properties"]["Bucket"] == {"Ref": name}
        ]
        [statement] = policies[0]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_task_queue_has_a_dead_letter_queue_sse_and_six_times_the_timeout(
    template: Template,
) -> None:
    queues = template.of_type("AWS::SQS::Queue")
    [task_queue] = [p for p in queues.values() if "RedrivePolicy" in p]
    assert int(task_queue["RedrivePolicy"]["maxReceiveCount"]) >= 5
    _, worker = template.function("worker.handler")
    assert int(task_queue["VisibilityTimeout"]) >= 6 * int(worker["Timeout"])
    for props in queues.values():
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId")
    for props in template.of_type("AWS::SQS::QueuePolicy").values():
        [statement] = props["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_kinesis_event_source_sets_every_setting_explicitly(template: Template) -> None:
    [kinesis] = [
        p
        for p in template.of_type("AWS::Lambda::EventSourceMapping").values()
        if "Kinesis::Stream" in str(p["EventSourceArn"])
    ]
    for key in (
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",
        "MaximumRecordAgeInSeconds",
        "StartingPosition",
    ):
        assert key in kinesis
    assert kinesis["BisectBatchOnFunctionError"] is True
    assert kinesis["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 <= int(kinesis["MaximumRetryAttempts"]) <= 10_000
    assert 0 < int(kinesis["MaximumRecordAgeInSeconds"]) < 24 * 3600
    assert kinesis["DestinationConfig"]["OnFailure"]["Destination"]


def test_the_sqs_event_source_reports_item_failures_with_capped_concurrency(
    template: Template,
) -> None:
    [sqs] = [
        p
        for p in template.of_type("AWS::Lambda::EventSourceMapping").values()
        if "SQS::Queue" in str(p["EventSourceArn"])
    ]
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert int(sqs["ScalingConfig"]["MaximumConcurrency"]) >= 2


@pytest.mark.parametrize("handler", ["worker.handler", "status.handler"])
def test_function_environment_names(template: Template, handler: str) -> None:
    _, props = template.function(handler)
    names = set(props["Environment"]["Variables"])
    tq = {n for n in names if n.startswith("TQ_")}
    assert tq == FROM_ENV_NAMES | {"TQ_APP", "TQ_MAX_DELIVERIES"}  # the latter read by the engine
    assert names - tq <= {n for n in names if n.startswith("POWERTOOLS_")}
    if handler == "worker.handler":
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= names
    assert props["TracingConfig"]["Mode"] == "Active"
    assert int(props["MemorySize"]) and int(props["Timeout"])
    log_group = props["LoggingConfig"]["LogGroup"]
    assert "Logs::LogGroup" in str(log_group)


def test_log_groups_have_retention(template: Template) -> None:
    groups = template.of_type("AWS::Logs::LogGroup")
    assert len(groups) >= 2
    assert all(int(p["RetentionInDays"]) > 0 for p in groups.values())


def test_status_function_url_uses_iam_auth(template: Template) -> None:
    [url] = template.of_type("AWS::Lambda::Url").values()
    assert url["AuthType"] == "AWS_IAM"


def test_alarms_on_iterator_age_dead_letters_errors_and_throttles(template: Template) -> None:
    metrics = {
        (p["Namespace"], p["MetricName"])
        for p in template.of_type("AWS::CloudWatch::Alarm").values()
    }
    assert metrics == {
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    }


def test_identity_policies_name_actions_and_resources(template: Template) -> None:
    documents = list(iter_policy_documents(template))
    assert documents
    for owner, document in documents:
        for statement in listed(document["Statement"]):
            assert "NotAction" not in statement and "NotResource" not in statement, owner
            actions = listed(statement["Action"])
            assert actions and all(a != "*" and not a.endswith(":*") for a in actions), owner
            resources = listed(statement["Resource"])
            assert resources, owner
            if "*" in resources:
                assert resources == ["*"], owner
                assert all(a.startswith(STAR_ALLOWED) for a in actions), (owner, actions)
    for props in template.of_type("AWS::IAM::Role").values():
        assert not props.get("ManagedPolicyArns"), "no AWS-managed policies"


def test_worker_and_scheduler_roles_have_the_rights_the_library_uses(template: Template) -> None:
    worker_name, _ = template.function("worker.handler")
    role = template.role_name_of(template.raw(worker_name)["Properties"]["Role"])
    actions = template.actions(role)
    assert {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:ConditionCheckItem",
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "iam:PassRole",
        "kinesis:PutRecords",
        "kinesis:GetRecords",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "s3:GetObject",
        "s3:PutObject",
    } <= actions
    [pass_role] = [
        s for s in template.identity_statements(role) if "iam:PassRole" in listed(s["Action"])
    ]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    [scheduler] = template.roles_trusting("scheduler.amazonaws.com")
    assert template.actions(scheduler) == {"kinesis:PutRecord", "sqs:SendMessage"}
    resources = [
        r
        for s in template.identity_statements(scheduler)
        if "sqs:SendMessage" in listed(s["Action"])
        for r in listed(s["Resource"])
    ]
    assert len(resources) == 2  # the task queue and the schedules' dead-letter queue


def test_outputs_name_stream_queue_table_bucket_and_status_url(template: Template) -> None:
    outputs = template.doc["Outputs"]
    names = {n for n in outputs if not n.startswith("CDK")}
    assert {"StreamName", "QueueUrl", "TableName", "BucketName", "StatusUrl"} <= names


def test_the_worker_parks_a_failing_record_before_the_event_sources_give_up_on_it(
    template: Template,
) -> None:
    """A record is parked as poison after ``TQ_MAX_DELIVERIES`` deliveries; Lambda must deliver
    it at least that often (a Kinesis record 1 + MaximumRetryAttempts times, an SQS message
    maxReceiveCount times) or it leaves by the on-failure destination or the DLQ unparked."""
    _, worker = template.function("worker.handler")
    max_deliveries = int(worker["Environment"]["Variables"]["TQ_MAX_DELIVERIES"])
    [kinesis] = [
        p
        for p in template.of_type("AWS::Lambda::EventSourceMapping").values()
        if "Kinesis::Stream" in str(p["EventSourceArn"])
    ]
    assert 1 + int(kinesis["MaximumRetryAttempts"]) > max_deliveries
    [task_queue] = [p for p in template.of_type("AWS::SQS::Queue").values() if "RedrivePolicy" in p]
    assert int(task_queue["RedrivePolicy"]["maxReceiveCount"]) > max_deliveries
