"""The tq-aws stack as a CDK construct (``TqAws``) and the stack of ``infra/app.py``."""

from tq_aws_infra.construct import EcsWorkerOptions, TqAws
from tq_aws_infra.stack import TqAwsStack, add_policy_checks

__all__ = ["EcsWorkerOptions", "TqAws", "TqAwsStack", "add_policy_checks"]
