"""tq-aws: an AWS-native task-queue worker with an embedded in-memory default."""

from tq_aws.app import TaskQueue
from tq_aws.core.actions import Actions
from tq_aws.core.flow_results import FlowResults, FlowStepResult
from tq_aws.core.flows import FlowStatus, Join
from tq_aws.core.lifecycle import LifecycleListener
from tq_aws.core.poison import PoisonRecord
from tq_aws.core.projections import ProjectionRow
from tq_aws.core.task import Entity, Task, TaskStatus
from tq_aws.errors import (
    ConfigurationError,
    PermanentFailure,
    PublishError,
    TaskValidationError,
    TqError,
)

__all__ = [
    "Actions",
    "ConfigurationError",
    "Entity",
    "FlowResults",
    "FlowStatus",
    "FlowStepResult",
    "Join",
    "LifecycleListener",
    "PermanentFailure",
    "PoisonRecord",
    "ProjectionRow",
    "PublishError",
    "Task",
    "TaskQueue",
    "TaskStatus",
    "TaskValidationError",
    "TqError",
]
__version__ = "0.1.0"
