"""infernet_core: an embeddable Infernet Node.

The public API is re-exported here; see :class:`Node` to start.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("infernet-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .config import ContainerConfig, NodeConfig, load_config, parse_config  # noqa: E402
from .containers import ContainerClient, HttpContainer, LocalContainer, echo  # noqa: E402
from .errors import (  # noqa: E402
    AdmissionError,
    BadRequest,
    ConfigError,
    ContainerFailure,
    Forbidden,
    InfernetError,
    InvalidTransition,
    NodeNotRunning,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    StoreUnavailable,
)
from .jobs import Job, JobState  # noqa: E402
from .models import (  # noqa: E402
    ContainerError,
    ContainerInfo,
    ContainerInput,
    ContainerOutput,
    DelegatedSubscriptionRequest,
    JobRequest,
    JobResult,
    NodeInfo,
    Signature,
    Source,
    StatusUpdate,
    SubscriptionRequest,
)
from .node import BatchEntry, Node  # noqa: E402
from .parsing import parse_batch, parse_compute_request, parse_status_update  # noqa: E402
from .store import ResultStore  # noqa: E402
from .stores import MemoryResultStore  # noqa: E402
from .streaming import JobStream  # noqa: E402

__all__ = (
    "AdmissionError",
    "BadRequest",
    "BatchEntry",
    "ConfigError",
    "ContainerClient",
    "ContainerConfig",
    "ContainerError",
    "ContainerFailure",
    "ContainerInfo",
    "ContainerInput",
    "ContainerOutput",
    "DelegatedSubscriptionRequest",
    "Forbidden",
    "HttpContainer",
    "InfernetError",
    "InvalidTransition",
    "Job",
    "JobRequest",
    "JobResult",
    "JobState",
    "JobStream",
    "LocalContainer",
    "MemoryResultStore",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeNotRunning",
    "Overloaded",
    "NotFound",
    "PayloadTooLarge",
    "ResultStore",
    "Signature",
    "Source",
    "StatusUpdate",
    "StoreUnavailable",
    "SubscriptionRequest",
    "__version__",
    "echo",
    "load_config",
    "parse_batch",
    "parse_compute_request",
    "parse_config",
    "parse_status_update",
)
