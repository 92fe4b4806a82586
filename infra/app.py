"""The CDK app: ``python infra/app.py`` (or ``cdk synth`` in ``infra/``) writes the tq-aws stack
to ``infra/cdk.out/``, offline and without credentials (the stack is environment-agnostic).

Context (``cdk synth -c name=value``):
    app_spec: ``TQ_APP`` of the functions (default ``tasks:app``).
    sqs: ``false`` leaves out the SQS task queue.
    stream_mode: ``ON_DEMAND`` (default) or ``PROVISIONED`` (with ``shard_count``).
    ecs_image: an image of the repository's ``Dockerfile``; with it, the ECS Fargate worker
        runs too, in a new VPC.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import aws_cdk as cdk  # noqa: E402
from aws_cdk import aws_ec2 as ec2  # noqa: E402
from aws_cdk import aws_ecs as ecs  # noqa: E402
from aws_cdk import aws_kinesis as kinesis  # noqa: E402
from tq_aws_infra import EcsWorkerOptions, TqAwsStack, add_policy_checks  # noqa: E402


def build_app(outdir: str | None = None) -> cdk.App:
    """The app with its one stack, ``TqAws``, and the cdk-nag checks."""
    app = cdk.App(outdir=outdir or os.environ.get("CDK_OUTDIR") or str(HERE / "cdk.out"))
    context = app.node.try_get_context
    stack = cdk.Stack(app, "TqAwsVpc") if context("ecs_image") else None
    ecs_worker = None
    if stack is not None:
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
        vpc.add_flow_log("FlowLog")
        ecs_worker = EcsWorkerOptions(
            image=ecs.ContainerImage.from_registry(str(context("ecs_image"))), vpc=vpc
        )
    mode = str(context("stream_mode") or "ON_DEMAND").upper()
    TqAwsStack(
        app,
        "TqAws",
        description="tq-aws: task queue on Kinesis, SQS, DynamoDB and EventBridge Scheduler",
        tq={
            "app_spec": str(context("app_spec") or "tasks:app"),
            "enable_sqs": str(context("sqs") or "true").lower() != "false",
            "stream_mode": kinesis.StreamMode[mode],
            "shard_count": int(context("shard_count") or 1),
            "ecs_worker": ecs_worker,
        },
    )
    add_policy_checks(app)
    return app


if __name__ == "__main__":
    build_app().synth()
