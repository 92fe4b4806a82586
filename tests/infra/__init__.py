"""Tests of the deploy templates, the CDK construct and the Lambda entry points (``make infra``)."""
