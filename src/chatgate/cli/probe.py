"""Reaching the gateway over HTTP: its local URL, JSON GETs and the /health check."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

HTTP_TIMEOUT_SECONDS = 3.0


def base_url(host: str, port: int) -> str:
    """URL a local client uses to reach a server bound to host:port."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _opener() -> urllib.request.OpenerDirector:
    # The gateway is reached directly: never through an HTTP(S)_PROXY from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_json(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> tuple[int, Any]:
    """GET url; (status, parsed JSON body). Error statuses are returned, not raised.

    Raises OSError (URLError, timeouts, refused connections) when nothing answers, and ValueError
    when the body is not JSON.
    """
    try:
        with _opener().open(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        return exc.code, json.loads(body) if body else None


def health_ok(url: str) -> bool:
    """Whether GET url/health answers 200; "nothing answers yet" is normal while starting."""
    try:
        status, _ = fetch_json(f"{url}/health", timeout=2.0)
    except (OSError, ValueError):
        return False
    return status == 200
