"""Helpers for switching models through the admin API of a served gateway."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.harness import Served


def admin_headers(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.token()}"}


def switch_and_wait(served: Served, profile_id: str, timeout: float = 400.0) -> dict[str, Any]:
    """POST the switch, then poll its status until it finished; returns the final status."""
    headers = admin_headers(served)
    started = httpx.post(
        f"{served.url}/api/admin/models/{profile_id}/switch", headers=headers, timeout=30
    )
    assert started.status_code == 202, started.text
    assert started.json()["target"] == profile_id
    deadline = time.monotonic() + timeout
    phases: list[str] = []
    while time.monotonic() < deadline:
        current = httpx.get(f"{served.url}/api/admin/models/switch", headers=headers, timeout=30)
        status: dict[str, Any] = current.json()["switch"]
        if not phases or phases[-1] != status["phase"]:
            phases.append(status["phase"])
        if status["finished_at"] is not None:
            status["seen_phases"] = phases
            return status
        time.sleep(0.5)
    raise AssertionError(f"switch to {profile_id} did not finish in {timeout}s: {phases}")


def chat_text(served: Served, model: str, prompt: str = "Say hello.") -> tuple[str, dict[str, Any]]:
    """A streamed /v1 chat answer through the gateway: (text, usage)."""
    key_headers = admin_headers(served)
    text, usage = "", {}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json=body, headers=key_headers, timeout=300
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = httpx.Response(200, content=line[6:]).json()
            assert "error" not in chunk, chunk
            for choice in chunk.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
            usage = chunk.get("usage") or usage
    return text, usage
