"""OpenAI-style errors.

Every error the API returns is ``{"error": {"message", "type", "code"}}`` with a fitting status::

    HydraError
     ├─ BadRequest          400  invalid_request_error   (malformed JSON, invalid request)
     ├─ Unauthorized        401  authentication_error
     ├─ Forbidden           403  permission_error
     ├─ NotFound            404  not_found_error / model_not_found
     ├─ PayloadTooLarge     413  invalid_request_error
     ├─ ClientClosedRequest 499  client_closed_request   (the client left; nobody reads it)
     ├─ TooManyRequests     429  rate_limit_error        (with Retry-After)
     ├─ BadGateway          502  upstream_error
     ├─ ServiceUnavailable  503  service_unavailable
     └─ GatewayTimeout      504  timeout_error
"""

from __future__ import annotations

import logging
from typing import ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from .exchange import REQUEST_ID_HEADER, exchange_of

__all__ = [
    "BadGateway",
    "BadRequest",
    "ClientClosedRequest",
    "Forbidden",
    "GatewayTimeout",
    "HydraError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "answer_error",
    "error_body",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("hydra_coordinator.errors")


class HydraError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"  # always a string, as OpenAI's own codes are

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(HydraError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(HydraError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(HydraError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(HydraError):
    status, type, code = 404, "not_found_error", "not_found"


class PayloadTooLarge(HydraError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class ClientClosedRequest(HydraError):
    """The client went away (e.g. in the middle of sending its body): not a server error."""

    status, type, code = 499, "invalid_request_error", "client_closed_request"


class TooManyRequests(HydraError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class BadGateway(HydraError):
    status, type, code = 502, "upstream_error", "upstream_unavailable"


class ServiceUnavailable(HydraError):
    status, type, code = 503, "service_unavailable", "no_backend_available"


class GatewayTimeout(HydraError):
    status, type, code = 504, "timeout_error", "upstream_timeout"


def error_body(message: str, type_: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}})


def error_response(error: HydraError, extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**error.headers, **(extra_headers or {})}
    return Response(
        error_body(error.message, error.type, error.code),
        error.status,
        headers=headers,
        media_type="application/json",
    )


def answer_error(
    scope: Scope, error: HydraError, extra_headers: dict[str, str] | None = None
) -> Response:
    """The error response to an HTTP request, marked on its exchange (so it is accounted for:
    counted, logged and, for a chat request, recorded) and carrying its request id."""
    exchange = exchange_of(scope)
    if exchange is None:
        return error_response(error, extra_headers)
    exchange.answered(error.status, error.code)
    return error_response(error, {**(extra_headers or {}), REQUEST_ID_HEADER: exchange.request_id})


class _HttpError(HydraError):
    """Starlette's own HTTP errors (unknown path, wrong method), as the API's errors."""

    _types: ClassVar[dict[int, str]] = {404: "not_found_error"}
    _codes: ClassVar[dict[int, str]] = {404: "not_found", 405: "method_not_allowed"}

    def __init__(self, exc: StarletteHTTPException) -> None:
        status = exc.status_code
        super().__init__(
            str(exc.detail),
            code=self._codes.get(status, f"http_{status}"),
            headers=dict(exc.headers) if exc.headers else None,
        )
        self.status = status
        self.type = self._types.get(status, "invalid_request_error")


def install_error_handlers(app: FastAPI) -> None:
    async def hydra_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HydraError)
        return answer_error(request.scope, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return answer_error(request.scope, BadRequest(f"{where}: {first['msg']}"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return answer_error(request.scope, _HttpError(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return answer_error(request.scope, HydraError("internal error"))

    app.add_exception_handler(HydraError, hydra_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
