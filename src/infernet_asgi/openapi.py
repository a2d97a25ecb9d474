"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the node's msgspec models and
its routes, never written by hand.

The request and result schemas come from :func:`msgspec.json.schema_components`, so they are
exactly what the node decodes and encodes; the routes, their parameters and their answers are
listed here, next to nothing else, and a test checks that every route of the app is here.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

import msgspec

from infernet_core import __version__
from infernet_core.models import DelegatedSubscriptionRequest, JobRequest, JobResult, NodeInfo, StatusUpdate

__all__ = ("PATHS", "openapi_document")

_REF: Final = "#/components/schemas/{name}"
_MODELS: Final = (JobRequest, DelegatedSubscriptionRequest, StatusUpdate, JobResult, NodeInfo)

_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "params": {"type": "object"}},
    "required": ["error"],
}
_ERRORS: Final = {
    "400": "Malformed request, or refused by the guardian",
    "403": "Not allowed from this address",
    "404": "No such route",
    "405": "Method not allowed here",
    "408": "The body did not arrive in time",
    "409": "The job has already finished",
    "413": "Body or batch too large",
    "429": "Over the rate limit (Retry-After)",
    "503": "Not running, overloaded, or the store is unavailable (Retry-After when it helps)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(_ref("Error"), _ERRORS[code]) for code in codes}


_STRING: Final = {"type": "string"}
_COMMON: Final = ("400", "404", "405", "408", "413", "429", "503")
# anyOf, not oneOf (here and below): the models allow unknown fields, so a body can match
# both (the node reads one with ``containers`` as a JobRequest); an error entry of a batch
# matches the open _CREATED object too, and ``[]`` is an array of results and of ids.
_COMPUTE: Final = {"anyOf": [_ref("JobRequest"), _ref("DelegatedSubscriptionRequest")]}
_CREATED: Final = {
    "type": "object",
    "properties": {"id": {"type": "string", "format": "uuid"}},
    "description": "The new job's id; {} for an accepted delegated subscription",
}


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_PATHS: Final[dict[str, Any]] = {
    "/health": {"get": _operation("Liveness", {"200": _json({"type": "object"})})},
    "/ready": {
        "get": _operation(
            "Readiness: store, containers and chain",
            {"200": _json({"type": "object"}), **_errors("503")},
        )
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics (when server.metrics is on)",
            {
                "200": {
                    "description": "Text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors("404"),
            },
        )
    },
    "/openapi.json": {"get": _operation("This document", {"200": _json({"type": "object"})})},
    "/info": {"get": _operation("The node", {"200": _json(_ref("NodeInfo")), **_errors("503")})},
    "/api/jobs": {
        "post": _operation(
            "Submit a job or a delegated subscription",
            {
                # The id a 200 gives is the one GET /api/jobs?id= reads (a link, for clients
                # and for stateful testers such as schemathesis).
                "200": {
                    **_json(_CREATED),
                    "links": {"GetResult": {"operationId": "getJobs", "parameters": {"id": "$response.body#/id"}}},
                },
                **_errors(*_COMMON),
            },
            requestBody=_body(_COMPUTE),
            operationId="createJob",
        ),
        "get": _operation(
            "The caller's results (with id) or job ids (without)",
            {
                "200": _json(
                    {
                        "anyOf": [
                            {"type": "array", "items": _ref("JobResult")},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    }
                ),
                **_errors("400", "429", "503"),
            },
            operationId="getJobs",
            parameters=[
                {"name": "id", "in": "query", "schema": {"type": "string"}, "description": "A job id (repeatable)"},
                {"name": "intermediate", "in": "query", "schema": {"type": "boolean"}},
                {"name": "pending", "in": "query", "schema": {"type": "boolean"}},
            ],
        ),
    },
    "/api/jobs/batch": {
        "post": _operation(
            "Submit many; one entry per item, in order",
            {
                "200": _json({"type": "array", "items": {"anyOf": [_CREATED, _ref("Error")]}}),
                **_errors(*_COMMON),
            },
            requestBody=_body({"type": "array", "items": _COMPUTE}),
        )
    },
    "/api/jobs/stream": {
        "post": _operation(
            "Run a job's first container as a stream: the job id line, then its bytes",
            {
                "200": {
                    "description": "The stream",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                **_errors(*_COMMON),
            },
            requestBody=_body(_ref("JobRequest")),
        )
    },
    "/api/status": {
        "put": _operation(
            "A status from a container that does not speak the protocol",
            {
                "200": _json(
                    {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}
                ),
                **_errors("400", "403", "404", "405", "408", "409", "413", "503"),
            },
            requestBody=_body(_ref("StatusUpdate")),
        )
    },
    "/resources": {
        "get": _operation(
            "Each container's resources",
            {"200": _json({"type": "object"}), **_errors("429", "503")},
            parameters=[{"name": "model_id", "in": "query", "schema": {"type": "string"}}],
        )
    },
}


def _components() -> dict[str, Any]:
    """The models' schemas. msgspec describes a union of several untagged structs only as
    the fields of a struct it decodes by hand (``JobResult.result``): such a struct's schema
    is put together here from msgspec's schemas of its fields."""
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        try:
            _, found = msgspec.json.schema_components([model], ref_template=_REF)
        except TypeError:
            found = _struct_components(model)
        schemas.update(found)
    return schemas


def _struct_components(model: type[msgspec.Struct]) -> dict[str, Any]:
    hints = get_type_hints(model)
    components: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in msgspec.structs.fields(model):
        hint = hints[field.name]
        members = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
        types = tuple(t for t in members if t is not msgspec.UnsetType)  # unset: left out, not a value
        schemas, found = msgspec.json.schema_components(types, ref_template=_REF)
        components.update(found)
        properties[field.encode_name] = schemas[0] if len(schemas) == 1 else {"anyOf": list(schemas)}
        if field.required:
            required.append(field.encode_name)
    components[model.__name__] = {
        "title": model.__name__,
        "description": (model.__doc__ or "").strip().split("\n\n")[0],
        "type": "object",
        "properties": properties,
        "required": required,
    }
    return components


def openapi_document(root_path: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the node's REST API, served under ``root_path``."""
    components = _components()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Infernet node (infernet-core)", "version": __version__},
        "servers": [{"url": root_path or "/"}],
        "paths": _PATHS,
        "components": {"schemas": {**components, "Error": _ERROR_SCHEMA}},
    }


PATHS: Final = frozenset(_PATHS)
"""The routes the document describes (a test holds them equal to the app's)."""
