"""cfn-lint rules of tq-aws, for both templates (SAM after its transform, and the CDK output).

No stock rule checks what the tq-aws worker relies on:

- E9101: a Kinesis event source mapping sets its batch size, batching window, parallelization
  factor and starting position, bisects on error, reports batch item failures, retries a finite
  number of times, ages records out before the stream's retention does, and has an on-failure
  destination; an SQS one reports batch item failures, caps its concurrency, and reads a queue
  whose visibility timeout is at least 6x the function's timeout and which has a redrive policy
  with ``maxReceiveCount`` >= 5.
- E9102: an EventBridge schedule has a retry policy (finite attempts, a maximum event age) and a
  dead-letter queue; the role of a schedule group's schedules may send to a dead-letter queue.

Run: ``cfn-lint -a infra/cfn_rules TEMPLATE.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cfnlint.rules import CloudFormationLintRule, RuleMatch

KINESIS_REQUIRED = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "StartingPosition",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "DestinationConfig",
)
VISIBILITY_FACTOR = 6
MIN_RECEIVE_COUNT = 5
LAMBDA_DEFAULT_TIMEOUT = 3
SQS_DEFAULT_VISIBILITY = 30
KINESIS_DEFAULT_RETENTION_HOURS = 24
_UNKNOWN = object()


def _resolve(cfn: Any, value: Any) -> Any:
    """A literal, a parameter's default, or a mapping entry; ``_UNKNOWN`` when it cannot be
    known before deployment (a resource attribute, a condition)."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref" and isinstance(arg, str):
            parameter = cfn.template.get("Parameters", {}).get(arg)
            return parameter.get("Default", _UNKNOWN) if isinstance(parameter, dict) else _UNKNOWN
        if fn == "Fn::FindInMap" and isinstance(arg, list) and len(arg) == 3:
            keys = [_resolve(cfn, k) for k in arg]
            if any(k is _UNKNOWN for k in keys):
                return _UNKNOWN
            entry = cfn.template.get("Mappings", {}).get(str(keys[0]), {}).get(str(keys[1]), {})
            return entry.get(str(keys[2]), _UNKNOWN) if isinstance(entry, dict) else _UNKNOWN
        return _UNKNOWN
    return value


def _number(cfn: Any, value: Any) -> float | None:
    resolved = _resolve(cfn, value)
    try:
        return float(resolved)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _target(cfn: Any, value: Any) -> tuple[str | None, dict[str, Any]]:
    """The logical id and resource that ``Ref``/``Fn::GetAtt`` ``value`` points at."""
    name: str | None = None
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            name = value["Ref"]
        elif "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            name = att[0] if isinstance(att, list) else str(att).split(".", 1)[0]
    resources = cfn.template.get("Resources", {})
    return name, resources.get(name, {}) if name else {}


def _source_kind(cfn: Any, props: dict[str, Any]) -> str | None:
    arn = props.get("EventSourceArn")
    _, resource = _target(cfn, arn)
    kind = resource.get("Type")
    if kind == "AWS::Kinesis::Stream" or (isinstance(arn, str) and ":kinesis:" in arn):
        return "kinesis"
    if kind == "AWS::SQS::Queue" or (isinstance(arn, str) and ":sqs:" in arn):
        return "sqs"
    return None


class EventSourceMappingSettings(CloudFormationLintRule):
    """Kinesis and SQS event source mappings carry the settings the worker relies on."""

    id = "E9101"
    shortdesc = "tq-aws event source mapping settings"
    description = (
        "Kinesis mappings set batch size, batching window, parallelization factor, starting "
        "position, bisect on error, ReportBatchItemFailures, finite retries, a maximum record "
        "age below retention and an on-failure destination; SQS mappings report batch item "
        "failures, cap concurrency, and read a queue with visibility >= 6x the function "
        "timeout and a redrive policy with maxReceiveCount >= 5"
    )
    source_url = "docs/deploy.md"
    tags = ["lambda", "kinesis", "sqs", "tq-aws"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for name, resource in cfn.get_resources(["AWS::Lambda::EventSourceMapping"]).items():
            props = resource.get("Properties") or {}
            path = ["Resources", name, "Properties"]
            kind = _source_kind(cfn, props)
            problems = (
                self._kinesis(cfn, props)
                if kind == "kinesis"
                else self._sqs(cfn, props)
                if kind == "sqs"
                else iter(())
            )
            matches.extend(RuleMatch(path, f"{name}: {problem}") for problem in problems)
        return matches

    @staticmethod
    def _reports_item_failures(props: dict[str, Any]) -> bool:
        types = props.get("FunctionResponseTypes")
        return isinstance(types, list) and "ReportBatchItemFailures" in types

    def _kinesis(self, cfn: Any, props: dict[str, Any]) -> Iterator[str]:
        for key in KINESIS_REQUIRED:
            if key not in props:
                yield f"a Kinesis event source mapping must set {key}"
        if "BisectBatchOnFunctionError" in props and _resolve(
            cfn, props["BisectBatchOnFunctionError"]
        ) not in (True, "true", "True", _UNKNOWN):
            yield "BisectBatchOnFunctionError must be true"
        if "FunctionResponseTypes" in props and not self._reports_item_failures(props):
            yield "FunctionResponseTypes must include ReportBatchItemFailures"
        retries = _number(cfn, props.get("MaximumRetryAttempts"))
        if retries is not None and retries < 0:
            yield "MaximumRetryAttempts must be finite (not -1)"
        age = _number(cfn, props.get("MaximumRecordAgeInSeconds"))
        if age is not None and age < 0:
            yield "MaximumRecordAgeInSeconds must be finite (not -1)"
        _, stream = _target(cfn, props.get("EventSourceArn"))
        hours = _number(
            cfn,
            (stream.get("Properties") or {}).get(
                "RetentionPeriodHours", KINESIS_DEFAULT_RETENTION_HOURS
            ),
        )
        if age is not None and age >= 0 and hours is not None and age >= hours * 3600:
            yield (
                f"MaximumRecordAgeInSeconds ({age:g}) must stay below the stream's retention "
                f"({hours:g} h)"
            )
        destination = (props.get("DestinationConfig") or {}).get("OnFailure") or {}
        if "DestinationConfig" in props and not destination.get("Destination"):
            yield "DestinationConfig.OnFailure.Destination must be set"

    def _sqs(self, cfn: Any, props: dict[str, Any]) -> Iterator[str]:
        if not self._reports_item_failures(props):
            yield "an SQS event source mapping must report ReportBatchItemFailures"
        if not (props.get("ScalingConfig") or {}).get("MaximumConcurrency"):
            yield "an SQS event source mapping must set ScalingConfig.MaximumConcurrency"
        _, queue = _target(cfn, props.get("EventSourceArn"))
        queue_props = queue.get("Properties") or {}
        _, function = _target(cfn, props.get("FunctionName"))
        fn_props = function.get("Properties") or {}
        if queue:
            visibility = _number(cfn, queue_props.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY))
            timeout = _number(cfn, fn_props.get("Timeout", LAMBDA_DEFAULT_TIMEOUT))
            if (
                function
                and visibility is not None
                and timeout is not None
                and visibility < VISIBILITY_FACTOR * timeout
            ):
                yield (
                    f"the queue's VisibilityTimeout ({visibility:g} s) must be at least "
                    f"{VISIBILITY_FACTOR}x the function's Timeout ({timeout:g} s)"
                )
            redrive = queue_props.get("RedrivePolicy")
            if not isinstance(redrive, dict) or not redrive.get("deadLetterTargetArn"):
                yield "the queue must have a RedrivePolicy with a deadLetterTargetArn"
            else:
                count = _number(cfn, redrive.get("maxReceiveCount"))
                if count is None or count < MIN_RECEIVE_COUNT:
                    yield f"the queue's maxReceiveCount must be at least {MIN_RECEIVE_COUNT}"


class SchedulerRetryAndDeadLetter(CloudFormationLintRule):
    """EventBridge schedules retry a finite number of times and keep what they give up on."""

    id = "E9102"
    shortdesc = "tq-aws scheduler retry policy and dead-letter queue"
    description = (
        "AWS::Scheduler::Schedule targets set RetryPolicy (MaximumRetryAttempts, "
        "MaximumEventAgeInSeconds) and DeadLetterConfig.Arn; with a schedule group, the role "
        "EventBridge Scheduler assumes may sqs:SendMessage to a queue (the dead-letter queue)"
    )
    source_url = "docs/deploy.md"
    tags = ["scheduler", "tq-aws"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for name, resource in cfn.get_resources(["AWS::Scheduler::Schedule"]).items():
            target = (resource.get("Properties") or {}).get("Target") or {}
            path = ["Resources", name, "Properties", "Target"]
            retry = target.get("RetryPolicy")
            if not isinstance(retry, dict):
                matches.append(RuleMatch(path, f"{name}: the target must set a RetryPolicy"))
            else:
                for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
                    if key not in retry:
                        matches.append(RuleMatch(path, f"{name}: RetryPolicy must set {key}"))
                attempts = _number(cfn, retry.get("MaximumRetryAttempts"))
                if attempts is not None and not 0 <= attempts <= 185:
                    matches.append(RuleMatch(path, f"{name}: MaximumRetryAttempts must be 0..185"))
            if not (target.get("DeadLetterConfig") or {}).get("Arn"):
                matches.append(RuleMatch(path, f"{name}: the target must set DeadLetterConfig.Arn"))
        if cfn.get_resources(["AWS::Scheduler::ScheduleGroup"]) and not any(
            self._may_send_to_a_queue(cfn, role)
            for role in cfn.get_resources(["AWS::IAM::Role"]).values()
            if self._trusts_scheduler(role)
        ):
            matches.append(
                RuleMatch(
                    ["Resources"],
                    "a schedule group needs a role trusted by scheduler.amazonaws.com that "
                    "may sqs:SendMessage to its dead-letter queue",
                )
            )
        return matches

    @staticmethod
    def _statements(document: Any) -> list[dict[str, Any]]:
        statements = (document or {}).get("Statement") or []
        return [s for s in statements if isinstance(s, dict)]

    def _trusts_scheduler(self, role: dict[str, Any]) -> bool:
        for statement in self._statements(
            (role.get("Properties") or {}).get("AssumeRolePolicyDocument")
        ):
            service = (statement.get("Principal") or {}).get("Service")
            services = service if isinstance(service, list) else [service]
            if "scheduler.amazonaws.com" in services:
                return True
        return False

    def _may_send_to_a_queue(self, cfn: Any, role: dict[str, Any]) -> bool:
        for policy in (role.get("Properties") or {}).get("Policies") or []:
            for statement in self._statements(policy.get("PolicyDocument")):
                actions = statement.get("Action")
                actions = actions if isinstance(actions, list) else [actions]
                if statement.get("Effect") != "Allow" or "sqs:SendMessage" not in actions:
                    continue
                resources = statement.get("Resource")
                resources = resources if isinstance(resources, list) else [resources]
                for value in resources:
                    _, resource = _target(cfn, value)
                    if resource.get("Type") == "AWS::SQS::Queue":
                        return True
        return False
