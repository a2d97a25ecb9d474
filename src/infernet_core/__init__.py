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
from .dispatch import Dispatcher, LocalDispatcher  # noqa: E402
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
    RateLimited,
    RequestTimeout,
    StoreUnavailable,
)
from .jobs import Job, JobState  # noqa: E402
from .metrics import NodeMetrics  # noqa: E402
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
from .node import BatchEntry, Node, StreamOpening  # noqa: E402
from .parsing import parse_batch, parse_compute_request, parse_status_update  # noqa: E402
from .ratelimit import MemoryRateLimiter, RateLimit, RateLimiter  # noqa: E402
from .store import ResultStore, Retention  # noqa: E402
from .stores import MemoryResultStore  # noqa: E402
from .stores.sqlite import SqliteResultStore  # noqa: E402
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
    "Dispatcher",
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
    "LocalDispatcher",
    "MemoryRateLimiter",
    "MemoryResultStore",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeMetrics",
    "NodeNotRunning",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "RequestTimeout",
    "ResultStore",
    "Retention",
    "Signature",
    "Source",
    "SqliteResultStore",
    "StatusUpdate",
    "StoreUnavailable",
    "StreamOpening",
    "SubscriptionRequest",
    "echo",
    "load_config",
    "parse_batch",
    "parse_compute_request",
    "parse_config",
    "parse_status_update",
    "__version__",
)
