"""An app for the ``tq-aws poison`` command's tests (``--app poison_app:app``)."""

from tq_aws import TaskQueue

app = TaskQueue()
