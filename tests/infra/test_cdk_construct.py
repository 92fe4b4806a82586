"""The ``TqAws`` construct, checked with ``aws_cdk.assertions`` (in process, no synth to disk):
its options (SQS off, provisioned stream, the ECS worker), and ``cdk synth`` through the CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import INFRA, INFRA_BIN, run

sys.path.insert(0, str(INFRA))

import aws_cdk as cdk
from aws_cdk import assertions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kinesis as kinesis
from tq_aws_infra import EcsWorkerOptions, TqAws


def build(**options: Any) -> assertions.Template:
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    if options.pop("ecs", False):
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
        options["ecs_worker"] = EcsWorkerOptions(
            image=ecs.ContainerImage.from_registry("public.ecr.aws/example/tq-aws:1"),
            vpc=vpc,
            grace_seconds=45,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        )
    TqAws(stack, "Tq", app_spec="shop.tasks:app", **options)
    return assertions.Template.from_stack(stack)


def test_defaults_kinesis_mapping_and_worker_environment() -> None:
    template = build()
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "StartingPosition": "TRIM_HORIZON",
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10,
            "MaximumRecordAgeInSeconds": 21600,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": assertions.Match.any_value()}},
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "worker.handler",
            "Environment": {
                "Variables": assertions.Match.object_like(
                    {"TQ_APP": "shop.tasks:app", "POWERTOOLS_SERVICE_NAME": "tq-worker"}
                )
            },
        },
    )
    template.has_resource_properties("AWS::SQS::Queue", {"VisibilityTimeout": 720})
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 2)
    template.resource_count_is("AWS::ECS::Service", 0)


def test_without_sqs_there_is_no_task_queue_nor_its_mapping() -> None:
    template = build(enable_sqs=False)
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    template.resource_count_is("AWS::SQS::Queue", 2)  # the failure and schedule DLQs
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": assertions.Match.object_like({"TQ_QUEUE_URL": ""})}},
    )


def test_a_provisioned_stream_has_its_shards() -> None:
    template = build(stream_mode=kinesis.StreamMode.PROVISIONED, shard_count=3)
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {"ShardCount": 3, "StreamModeDetails": {"StreamMode": "PROVISIONED"}},
    )


def test_the_ecs_worker_option() -> None:
    template = build(ecs=True)
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "RequiresCompatibilities": ["FARGATE"],
            "ContainerDefinitions": [
                assertions.Match.object_like(
                    {
                        "Command": ["--grace-seconds", "45"],
                        "StopTimeout": 65,
                        "ReadonlyRootFilesystem": True,
                    }
                )
            ],
        },
    )
    roles = template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [
                        assertions.Match.object_like(
                            {"Principal": {"Service": "ecs-tasks.amazonaws.com"}}
                        )
                    ]
                },
                "Policies": assertions.Match.any_value(),
            }
        },
    )
    [task_role] = roles.values()
    actions = {
        a
        for policy in task_role["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    # shard leases and checkpoints are conditional writes on the store table
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"} <= (
        actions
    )
    assert {"kinesis:GetRecords", "kinesis:ListShards", "sqs:ReceiveMessage"} <= actions


def test_a_grace_longer_than_fargate_allows_is_refused() -> None:
    with pytest.raises(Exception, match="grace_seconds"):
        app = cdk.App()
        stack = cdk.Stack(app, "S")
        TqAws(
            stack,
            "Tq",
            ecs_worker=EcsWorkerOptions(
                image=ecs.ContainerImage.from_registry("public.ecr.aws/example/tq-aws:1"),
                vpc=ec2.Vpc(stack, "Vpc", nat_gateways=0),
                grace_seconds=110,
            ),
        )


def test_a_record_age_past_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="maximum_record_age"):
        TqAws(cdk.Stack(cdk.App(), "S"), "Tq", maximum_record_age=cdk.Duration.hours(24))


def test_cdk_synth_through_the_cli(tmp_path: Path) -> None:
    cli = INFRA / "node_modules" / ".bin" / "cdk"
    env_path = f"{INFRA_BIN}:{Path(sys.executable).parent}"
    from tests.infra.conftest import offline_env

    env = offline_env(PATH=f"{env_path}:{offline_env()['PATH']}")
    result = run([cli, "synth", "--no-notices", "-q", "-o", tmp_path / "out"], cwd=INFRA, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out" / "TqAws.template.json").exists()
