"""The node's error hierarchy.

Every error the node raises on purpose derives from :class:`InfernetError`, which carries a
stable machine-readable ``code`` and an HTTP ``status_hint``. Front ends (the ASGI app) map an
error to a response from those two attributes plus ``message`` and ``params``; they never
match on message text::

    InfernetError
     ├── ConfigError            config.invalid           (startup; no HTTP status)
     ├── BadRequest             request.invalid          400
     │    └── PayloadTooLarge   request.too_large        413
     ├── Forbidden              request.forbidden        403
     ├── NotFound               request.not_found        404
     ├── AdmissionError         job.rejected             400  (guardian rules)
     ├── InvalidTransition      job.invalid_transition   409  (job state machine)
     ├── NodeNotRunning         node.not_running         503
     ├── Overloaded             node.overloaded          503  (server.max_pending reached)
     ├── StoreUnavailable       store.unavailable        503  (result store down)
     ├── ChainUnavailable       chain.unavailable        503  (RPC unreachable)
     ├── ContainerFailure       container.failed         (inside the pipeline only)
     └── ContainerStartError    container.start_failed   (startup: managed containers)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = (
    "AdmissionError",
    "BadRequest",
    "ChainUnavailable",
    "ConfigError",
    "ContainerFailure",
    "ContainerStartError",
    "Forbidden",
    "InfernetError",
    "InvalidTransition",
    "NodeNotRunning",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "StoreUnavailable",
)


class InfernetError(Exception):
    """Base of every deliberate node error.

    Args:
        message: Human-readable text; becomes ``"error"`` in a JSON response.
        params: Optional details; becomes ``"params"`` in a JSON response.
    """

    code: ClassVar[str] = "infernet.error"
    status_hint: ClassVar[int] = 500
    retry_after: int | None = None
    """Seconds after which a retry may succeed (an HTTP ``Retry-After``), if the error says."""

    def __init__(self, message: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, params={self.params!r})"


class ConfigError(InfernetError):
    """The configuration is invalid; the message names the offending key path."""

    code = "config.invalid"


class BadRequest(InfernetError):
    """A request could not be parsed or has the wrong shape."""

    code = "request.invalid"
    status_hint = 400


class PayloadTooLarge(BadRequest):
    """A request body is larger than the configured limit."""

    code = "request.too_large"
    status_hint = 413


class RequestTimeout(InfernetError):
    """A request's body did not arrive within ``server.body_timeout``."""

    code = "request.timeout"
    status_hint = 408


class Forbidden(InfernetError):
    """The caller may not use this endpoint."""

    code = "request.forbidden"
    status_hint = 403


class NotFound(InfernetError):
    """The thing asked for does not exist (for this client)."""

    code = "request.not_found"
    status_hint = 404


class AdmissionError(InfernetError):
    """The guardian refused a job (unknown container, address not allowed, ...)."""

    code = "job.rejected"
    status_hint = 400


class InvalidTransition(InfernetError):
    """A job event is not allowed in the job's current state; the job is unchanged."""

    code = "job.invalid_transition"
    status_hint = 409


class NodeNotRunning(InfernetError):
    """The node is not started, or is shutting down, and cannot take work."""

    code = "node.not_running"
    status_hint = 503


class _TryLater(InfernetError):
    """An error that says when a retry may succeed (``retry_after`` seconds)."""

    def __init__(self, message: str, params: dict[str, Any] | None = None, retry_after: int = 1) -> None:
        super().__init__(message, params)
        self.retry_after = retry_after


class Overloaded(_TryLater):
    """The node has ``server.max_pending`` jobs pending: try again in ``retry_after`` seconds."""

    code = "node.overloaded"
    status_hint = 503


class RateLimited(_TryLater):
    """The client is over ``server.rate_limit`` for this endpoint: retry in ``retry_after`` s."""

    code = "request.rate_limited"
    status_hint = 429


class StoreUnavailable(InfernetError):
    """The result store cannot be reached; the request may be retried."""

    code = "store.unavailable"
    status_hint = 503


class ChainUnavailable(InfernetError):
    """The chain's RPC cannot be reached (or keeps failing); the request may be retried."""

    code = "chain.unavailable"
    status_hint = 503


class ContainerFailure(InfernetError):
    """A container call failed; the message says why (status, timeout, bad JSON, ...)."""

    code = "container.failed"
    status_hint = 502


class ContainerStartError(InfernetError):
    """Managed containers could not be started: the Docker engine is unreachable, images are
    missing, or a container does not answer HTTP in time; the message names them."""

    code = "container.start_failed"
