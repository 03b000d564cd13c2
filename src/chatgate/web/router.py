"""Serves the single-page app when no API route matched.

Hashed assets are cached for a year, everything else revalidated, and unknown paths
fall back to index.html so client-side routes survive a reload."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from chatgate.errors import not_found

STATIC_DIR = Path(__file__).parent / "static"
# Paths the SPA must never shadow: a typo there is an API 404, not the app's HTML.
RESERVED = ("api/", "v1/", "health", "docs", "redoc", "openapi.json", "metrics")
IMMUTABLE = "public, max-age=31536000, immutable"


def _file_under(root: Path, relative: str) -> Path | None:
    candidate = (root / relative).resolve()
    if candidate.is_file() and candidate.is_relative_to(root.resolve()):
        return candidate
    return None


def spa_response(root: Path, path: str) -> Response:
    if path.startswith(RESERVED):
        raise not_found("Route")
    index = root / "index.html"
    if not index.is_file():
        return PlainTextResponse(
            "The web UI is not built. Run `make run` (or `make ui`) in the chatgate checkout.",
            status_code=503,
        )
    found = _file_under(root, path) if path else None
    if found is None:
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
    cache = IMMUTABLE if path.startswith("assets/") else "no-cache"
    return FileResponse(found, headers={"Cache-Control": cache})


async def spa_fallback(scope: Scope, receive: Receive, send: Send) -> None:
    """The router's no-match handler: routes added at any time still take precedence."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        raise not_found("Route")
    response = spa_response(STATIC_DIR, scope["path"].lstrip("/"))
    await response(scope, receive, send)
