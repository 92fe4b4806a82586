"""An app for the ``tq-aws poison`` command's tests (``--app tests.support.poison_app:app``)."""

from tq_aws import TaskQueue

app = TaskQueue()
