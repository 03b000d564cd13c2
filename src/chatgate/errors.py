"""One JSON error shape everywhere: ``{"error": {"type", "message", "code"}}``.

Users get a clear message; details (tracebacks, upstream bodies) go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("chatgate.errors")

STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error meant for the client, rendered in the one error shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.error_type = error_type or STATUS_TYPES.get(status_code, "api_error")
        self.headers = headers
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.error_type, self.message, self.code, self.param)


def error_body(
    error_type: str, message: str, code: str, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "code": code, "param": param}}


def not_found(what: str) -> APIError:
    return APIError(404, f"{what} not found", "not_found")


def unauthorized(message: str = "Invalid or missing credentials") -> APIError:
    return APIError(401, message, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str = "You do not have permission for this") -> APIError:
    return APIError(403, message, "forbidden")


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
    err_type = STATUS_TYPES.get(exc.status_code, "api_error")
    return JSONResponse(
        error_body(err_type, str(exc.detail), code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        # loc holds the byte offset of the syntax error, which is not a parameter
        message = f"The request body is not valid JSON ({first.get('msg')})"
        return JSONResponse(
            error_body("invalid_request_error", message, "invalid_request"), status_code=400
        )
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return JSONResponse(
        error_body("invalid_request_error", message, "invalid_request", param), status_code=400
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("api_error", "Internal server error", "internal_error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
