"""``TqAwsStack``: a stack holding one ``TqAws`` construct, its outputs, and the policy checks
(cdk-nag's AWS Solutions and Serverless packs) that ``infra/app.py`` runs at synth."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import cdk_nag
from constructs import Construct

from tq_aws_infra.construct import TqAws


class TqAwsStack(cdk.Stack):
    """A stack with the tq-aws construct and the outputs of ``template.yaml``.

    Args:
        scope, construct_id: where the stack goes.
        tq: keyword arguments of ``TqAws``.
        stack: keyword arguments of ``cdk.Stack`` (``env``, ``description``...).

    Example:
        >>> app = cdk.App()
        >>> TqAwsStack(app, "TqAws", tq={"app_spec": "myapp.tasks:app"})
        >>> app.synth()
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tq: dict[str, Any] | None = None,
        **stack: Any,
    ) -> None:
        super().__init__(scope, construct_id, **stack)
        self.tq = TqAws(self, "Tq", **(tq or {}))
        outputs: dict[str, str] = {
            "StreamName": self.tq.stream.stream_name,
            "StreamArn": self.tq.stream.stream_arn,
            "TableName": self.tq.table.table_name,
            "BucketName": self.tq.bucket.bucket_name,
            "SchedulerGroup": self.tq.schedule_group.ref,
            "SchedulerRoleArn": self.tq.scheduler_role.role_arn,
            "WorkerFunctionName": self.tq.worker.function_name,
            "StatusUrl": self.tq.status_url.url,
        }
        if self.tq.queue is not None:
            outputs["QueueUrl"] = self.tq.queue.queue_url
        for name, value in outputs.items():
            cdk.CfnOutput(self, name, value=value)


def add_policy_checks(app: cdk.App) -> None:
    """Run cdk-nag's AWS Solutions and Serverless packs on every stack of ``app`` at synth;
    an unacknowledged finding fails the synth."""
    cdk.Validations.of(app).add_plugins(
        cdk_nag.AwsSolutionsChecks(app), cdk_nag.ServerlessChecks(app)
    )
