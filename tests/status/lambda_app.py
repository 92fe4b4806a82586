"""An app for the status Lambda entry point test (``TQ_APP=tests.status.lambda_app:app``)."""

from __future__ import annotations

from tq_aws import TaskQueue

app = TaskQueue()
