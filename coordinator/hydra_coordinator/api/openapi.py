"""``/openapi.json`` that describes the real API: request bodies and error answers.

The hot endpoints read their bodies themselves (one fast parse, see ``api/body.py``), so FastAPI
cannot infer them; the models here describe what those handlers accept, and every operation
lists the errors it can answer in the API's one error shape. Schema-based tools (client
generators, fuzzers such as schemathesis, run against it in the tests) then see the truth.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from .feedback import FeedbackRequest
from .route import RouteRequest

__all__ = ["install_openapi"]


class ErrorDetail(BaseModel):
    message: str = Field(description="what went wrong, for a person")
    type: str = Field(description="the error's family, e.g. invalid_request_error")
    code: str = Field(description="what went wrong, for a program, e.g. model_not_found")


class ErrorResponse(BaseModel):
    """Every error the API answers."""

    error: ErrorDetail


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(description="system, user, assistant, tool, ...")
    content: str | list[dict[str, Any]] | None = Field(
        default=None, description="text, or content parts (text, image_url, ...)"
    )


_MODEL = Field(
    min_length=1,
    description="auto (route), local or cloud (force the class), or a model of GET /v1/models",
    examples=["auto", "local", "cloud"],
)


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; fields not listed are passed upstream as they are."""

    model_config = ConfigDict(extra="allow")

    model: str = _MODEL
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=8)
    temperature: float | None = Field(default=None, ge=0, le=2)
    tools: list[dict[str, Any]] | None = None


_TEXT_INPUT = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(BaseModel):
    """OpenAI's legacy completion request; other fields are passed upstream as they are."""

    model_config = ConfigDict(extra="allow")

    model: str = _MODEL
    prompt: _TEXT_INPUT = Field(description="text, texts, or token ids")
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)


class EmbeddingRequest(BaseModel):
    """OpenAI's embedding request; other fields are passed upstream as they are."""

    model_config = ConfigDict(extra="allow")

    model: str = _MODEL
    input: _TEXT_INPUT = Field(description="text, texts, or token ids")


_ERRORS: dict[int, str] = {
    400: "the body is not JSON, not a valid request, or nested too deep",
    401: "no valid API key (when keys are configured)",
    403: "a privacy rule blocks the request, or a cross-origin browser request",
    404: "no backend serves the model; an unknown request id",
    413: "the body is over limits.max_body_bytes",
    421: "a Host this server does not answer to",
    429: "the key's rate limit, a backend's full queue, or an exhausted budget",
    499: "the client left",
    502: "the backend is unreachable, refused the coordinator's key, or answered garbage",
    503: "no backend of the route can take the request",
    504: "the backend, or the request as a whole, took too long",
}
_CLIENT_ERRORS = (400, 401, 403, 413, 421, 429)
_MODEL_ERRORS = (*_CLIENT_ERRORS, 404, 499, 502, 503, 504)

# (path, method) -> (the request body's model or None, the error statuses, other 200 types)
_OPERATIONS: dict[tuple[str, str], tuple[type[BaseModel] | None, tuple[int, ...], list[str]]] = {
    ("/v1/chat/completions", "post"): (
        ChatCompletionRequest,
        _MODEL_ERRORS,
        ["text/event-stream"],
    ),
    ("/v1/completions", "post"): (CompletionRequest, _MODEL_ERRORS, ["text/event-stream"]),
    ("/v1/embeddings", "post"): (EmbeddingRequest, _MODEL_ERRORS, []),
    ("/route", "post"): (RouteRequest, (*_CLIENT_ERRORS, 404, 503), []),
    ("/v1/feedback", "post"): (FeedbackRequest, (*_CLIENT_ERRORS, 404, 503), []),
    ("/v1/models", "get"): (None, (401, 403, 421), []),
    ("/health", "get"): (None, (403, 421, 503), []),
    ("/metrics", "get"): (None, (401, 403, 421), []),
}


# One server-sent event of a streamed answer (the schema of a text/event-stream response
# describes each event): its ``data`` is a JSON chunk, or ``[DONE]`` at the end.
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": "a chat.completion.chunk (text_completion for /v1/completions) as "
            "JSON, or [DONE] as the last event",
        },
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}

# operations whose 200 is text, not JSON
_TEXT_ONLY = {("/metrics", "get"): "text/plain"}


def _schemas() -> dict[str, Any]:
    """The JSON schemas of the documented models, with references into components."""
    found: dict[str, Any] = {}
    models: list[type[BaseModel]] = [ErrorResponse]
    models += [m for m, _, _ in _OPERATIONS.values() if m is not None]
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def describe(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (FastAPI's) with the real request bodies and error answers."""
    spec.setdefault("components", {}).setdefault("schemas", {}).update(_schemas())
    for (path, method), (body, errors, streamed) in _OPERATIONS.items():
        operation = spec["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(body.__name__)}},
            }
        ok = operation.setdefault("responses", {}).setdefault("200", {"description": "OK"})
        if (path, method) in _TEXT_ONLY:  # not JSON at all
            ok["content"] = {_TEXT_ONLY[path, method]: {"schema": {"type": "string"}}}
        for media_type in streamed:
            ok.setdefault("content", {})[media_type] = {"schema": _SSE_EVENT}
        for status in errors:
            operation["responses"][str(status)] = {
                "description": _ERRORS[status],
                "content": {"application/json": {"schema": _ref("ErrorResponse")}},
            }
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`describe`'s document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = describe(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
