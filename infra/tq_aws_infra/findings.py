"""The policy-check findings the tq-aws stack accepts, each with its reason: cdk-nag
acknowledgments (``Validations.of(...).acknowledge``), and checkov skips and cfn-lint ignores
written into the resources' CloudFormation ``Metadata``, where those tools read them. The same
findings carry the same reasons in ``template.yaml``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

if TYPE_CHECKING:
    from tq_aws_infra.construct import TqAws


def acknowledge_findings(tq: TqAws) -> None:
    """Acknowledge the cdk-nag findings the stack accepts, and write the checkov and cfn-lint
    ones into the resources' metadata, each with its reason."""
    failure_queues = [tq.stream_failure_queue, tq.schedule_dead_letter_queue]
    for queue in failure_queues:
        _ack(
            queue,
            "AwsSolutions::AwsSolutions-SQS3",
            "a dead-letter queue: the stream mapping's on-failure destination, or the one "
            "kept for the schedules' DeadLetterConfig; not a source queue",
        )
    for queue in [
        *failure_queues,
        *([tq.dead_letter_queue] if tq.dead_letter_queue else []),
    ]:
        _ack(
            queue,
            "Serverless::Serverless-SQSRedrivePolicy",
            "a dead-letter queue is the end of the line: its messages wait for an operator",
        )
    _ack(
        tq.bucket,
        "AwsSolutions::AwsSolutions-S1",
        "claim-check objects are short-lived copies of task payloads and results; "
        "CloudTrail data events audit access where needed",
    )
    for fn in (tq.worker, tq.status):
        _ack(
            fn,
            "AwsSolutions::AwsSolutions-L1",
            "python3.12 is the runtime the pinned AWS stack is built and tested for",
        )
        _ack(
            fn,
            "Serverless::Serverless-LambdaLatestVersion",
            "python3.12 is the runtime the pinned AWS stack is built and tested for",
        )
    _ack(
        tq.worker,
        "Serverless::Serverless-LambdaDLQ",
        "the worker is invoked by event source mappings, whose failures go to the stream "
        "failure queue and the task queue's DLQ; a function DLQ only serves async invokes",
    )
    _ack(
        tq.status,
        "Serverless::Serverless-LambdaDLQ",
        "the status function is invoked synchronously through its URL: nothing to keep",
    )
    if tq.queue_event_source is not None:
        _ack(
            tq.queue_event_source,
            "Serverless::Serverless-LambdaEventSourceMappingDestination",
            "an SQS mapping takes no on-failure destination: the queue's redrive policy "
            "moves a message to its DLQ after 5 receives",
        )
    for role in (tq.worker_role, tq.status_role):
        _ack(
            role,
            "Serverless::Serverless-LambdaStarPermissions",
            "the only '*' resource is X-Ray's (Put* and GetSampling* take no other); every "
            "other statement names its resources",
        )
    if tq.ecs_task_definition is not None:
        _ack(
            tq.ecs_task_definition,
            "AwsSolutions::AwsSolutions-ECS2",
            "the variables hold resource names and the TQ_APP spec, not secrets",
        )
    _skip_lint_findings(tq, failure_queues)
    roles = [tq.worker_role, tq.status_role]
    if tq.ecs_task_role is not None:
        roles.append(tq.ecs_task_role)
    for role in roles:
        _acknowledge_wildcards(tq, role, xray=role is not tq.ecs_task_role)


def _skip_lint_findings(tq: TqAws, failure_queues: list[sqs.Queue]) -> None:
    """checkov and cfn-lint findings this design accepts (reasons in the tables below)."""
    dead_letters = [*failure_queues]
    if tq.dead_letter_queue is not None:
        dead_letters.append(tq.dead_letter_queue)
    for queue in dead_letters:
        _skip(queue, checkov=("CKV_AWS_27",), cfn_lint=("ES6000",))
    if tq.queue is not None:
        _skip(tq.queue, checkov=("CKV_AWS_27",))
    if tq.queue_event_source is not None:
        _skip(tq.queue_event_source, cfn_lint=("ES1001",))
    _skip(tq.table, checkov=("CKV_AWS_119",))
    _skip(tq.bucket, checkov=("CKV_AWS_18", "CKV_AWS_21"))
    for group in tq.log_groups:
        _skip(group, checkov=("CKV_AWS_158",))
    for fn in (tq.worker, tq.status):
        _skip(
            fn,
            checkov=("CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"),
            cfn_lint=("WS1004", "W3005"),
        )


def _acknowledge_wildcards(tq: TqAws, role: iam.Role, *, xray: bool) -> None:
    """The scoped wildcards of a role's statements, each with its reason."""
    stack = Stack.of(tq)

    def logical_id(construct: Construct) -> str:
        return stack.resolve(stack.get_logical_id(construct.node.default_child))  # type: ignore[arg-type]

    table = logical_id(tq.table)
    bucket = logical_id(tq.bucket)
    group = stack.resolve(stack.get_logical_id(tq.schedule_group))
    findings = {
        f"Resource::<{table}.Arn>/index/*": "the table's own indexes (the status GSI)",
        f"Resource::<{bucket}.Arn>/*": "objects of the claim-check bucket only",
        "Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/"
        f"<{group}>/*": "schedules of the stack's own schedule group only (one per delay)",
    }
    if xray:
        findings["Resource::*"] = "X-Ray's Put* and GetSampling* actions take only '*'"
    for evidence, reason in findings.items():
        _ack(role, f"AwsSolutions::AwsSolutions-IAM5[{evidence}]", reason)


def _ack(construct: Construct, rule: str, reason: str) -> None:
    """Acknowledge a cdk-nag finding on ``construct``, with its reason."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


CHECKOV_REASONS = {
    "CKV_AWS_27": "encrypted at rest with SSE-SQS (SqsManagedSseEnabled); checkov counts only a "
    "KMS key",
    "CKV_AWS_119": "encrypted at rest with the AWS-managed DynamoDB key; a customer key adds cost "
    "and key administration, the user's choice",
    "CKV_AWS_18": "claim-check objects are short-lived copies of task payloads; CloudTrail data "
    "events audit access if needed",
    "CKV_AWS_21": "objects are written once under content-addressed keys and expire; versions "
    "would only keep them longer",
    "CKV_AWS_158": "log groups use CloudWatch Logs' default encryption; a customer key is the "
    "user's choice",
    "CKV_AWS_115": "concurrency is bounded by the event sources (shards x parallelization factor, "
    "SQS maximum concurrency) or by the URL's IAM auth; a reserved limit takes from the "
    "account's pool",
    "CKV_AWS_116": "failed batches are kept by the event sources (Kinesis on-failure queue, SQS "
    "redrive); a function DLQ serves async invokes, which these functions do not get",
    "CKV_AWS_117": "the functions reach only AWS service endpoints; a VPC is the user's choice",
    "CKV_AWS_173": "the variables hold resource names, not secrets; Lambda encrypts them at rest",
}
"""Why each checkov finding on the stack is accepted (the same reasons as template.yaml)."""

CFN_LINT_REASONS = {
    "ES6000": "a dead-letter queue is the end of the line: it has no redrive policy",
    "ES1001": "an SQS mapping takes no on-failure destination: the queue's redrive policy moves "
    "a message to its DLQ after 5 receives",
    "WS1004": "the function logs to its own log group (LoggingConfig), which has a retention",
    "W3005": "the CDK adds an explicit DependsOn on the role beside the GetAtt; harmless",
}
"""Why each cfn-lint finding on the stack is accepted."""


def _skip(
    construct: Construct, *, checkov: tuple[str, ...] = (), cfn_lint: tuple[str, ...] = ()
) -> None:
    """Write checkov skips and cfn-lint ignores, with their reasons, into the resource's
    CloudFormation ``Metadata`` (where those tools read them)."""
    child = construct.node.default_child if construct.node.default_child else construct
    assert isinstance(child, CfnResource)
    if checkov:
        child.add_metadata(
            "checkov", {"skip": [{"id": i, "comment": CHECKOV_REASONS[i]} for i in checkov]}
        )
    if cfn_lint:
        child.add_metadata("cfn-lint", {"config": {"ignore_checks": list(cfn_lint)}})
        child.add_metadata("cfn-lint-reasons", {i: CFN_LINT_REASONS[i] for i in cfn_lint})
