"""In-memory backends: the embedded default, and the test double for every port."""

from tq_aws.backends.memory.blob_store import MemoryBlobStore
from tq_aws.backends.memory.flow_store import MemoryFlowStore
from tq_aws.backends.memory.poison_store import MemoryPoisonStore
from tq_aws.backends.memory.projection_store import MemoryProjectionStore
from tq_aws.backends.memory.scheduler import MemoryScheduler
from tq_aws.backends.memory.task_store import MemoryTaskStore
from tq_aws.backends.memory.transport import MemoryTransport

__all__ = [
    "MemoryBlobStore",
    "MemoryFlowStore",
    "MemoryPoisonStore",
    "MemoryProjectionStore",
    "MemoryScheduler",
    "MemoryTaskStore",
    "MemoryTransport",
]
