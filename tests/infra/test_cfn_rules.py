"""Our cfn-lint rules (``infra/cfn_rules``): E9101 for event source mappings, E9102 for
EventBridge Scheduler retry policies and dead-letter queues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infra.conftest import INFRA, INFRA_BIN, run


def lint(tmp_path: Path, resources: dict[str, Any]) -> str:
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}))
    result = run([INFRA_BIN / "cfn-lint", path, "-a", INFRA / "cfn_rules", "-c", "E9101", "E9102"])
    return result.stdout + result.stderr


def base() -> dict[str, Any]:
    role = {"Fn::GetAtt": ["Role", "Arn"]}
    return {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
        "Dlq": {"Type": "AWS::SQS::Queue"},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 60}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.12",
                "Handler": "worker.handler",
                "Role": role,
                "Timeout": 120,
                "Code": {"ZipFile": "def handler(e, c): pass"},
            },
        },
    }


def test_a_bare_kinesis_mapping_is_reported_for_each_missing_setting(tmp_path: Path) -> None:
    resources = base()
    resources["Esm"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": "Fn"},
            "EventSourceArn": {"Fn::GetAtt": ["Stream", "Arn"]},
            "StartingPosition": "LATEST",
            "MaximumRetryAttempts": -1,
        },
    }
    out = lint(tmp_path, resources)
    for missing in (
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "FunctionResponseTypes",
        "DestinationConfig",
    ):
        assert f"must set {missing}" in out, missing
    assert "MaximumRetryAttempts must be finite" in out
    assert "E9101" in out


def test_a_record_age_at_or_past_retention_is_reported(tmp_path: Path) -> None:
    resources = base()
    resources["Esm"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": "Fn"},
            "EventSourceArn": {"Fn::GetAtt": ["Stream", "Arn"]},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 1,
            "ParallelizationFactor": 1,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "MaximumRecordAgeInSeconds": 86400,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Dlq", "Arn"]}}},
        },
    }
    out = lint(tmp_path, resources)
    assert "must stay below the stream's retention" in out
    assert out.count("E9101") == 1


def test_an_sqs_mapping_needs_item_failures_concurrency_visibility_and_redrive(
    tmp_path: Path,
) -> None:
    resources = base()
    resources["Esm"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": "Fn"},
            "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]},
        },
    }
    out = lint(tmp_path, resources)
    assert "ReportBatchItemFailures" in out
    assert "MaximumConcurrency" in out
    assert "at least 6x the function's Timeout" in out
    assert "RedrivePolicy" in out


def test_a_schedule_without_retry_policy_or_dead_letter_queue_is_reported(
    tmp_path: Path,
) -> None:
    resources = base()
    resources["Group"] = {"Type": "AWS::Scheduler::ScheduleGroup"}
    resources["Schedule"] = {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "ScheduleExpression": "rate(1 hour)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": {"Fn::GetAtt": ["Stream", "Arn"]},
                "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
            },
        },
    }
    out = lint(tmp_path, resources)
    assert "must set a RetryPolicy" in out
    assert "DeadLetterConfig.Arn" in out
    assert "trusted by scheduler.amazonaws.com" in out
    assert "E9102" in out
