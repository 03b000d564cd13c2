"""JSON logs: secrets masked, one inference line per request, files per kind, and no
planted canary (password, API key, JWT, e-mail) ever reaches a log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from chatgate.db import migrate
from chatgate.observability.logging import (
    MASK,
    configure_logging,
    log_kind,
    mask_secrets,
    mask_text,
    render_json,
)
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import start_gateway


@pytest.mark.parametrize(
    ("raw", "hidden", "kept"),
    [
        ("key sk-cg-AbCdEf0123456789xyz used", "AbCdEf0123456789xyz", "sk-cg-"),
        ("token eyJhbGciOi.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "c2lnbmF0dXJl", "<jwt"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Bearer"),
        ('{"password": "hunter2-canary"}', "hunter2-canary", "password"),
        ("postgresql://app:s3cr3t@db:5432/chat", "s3cr3t", "app:"),
        ("mail alice.smith@example.com now", "alice.smith", "@example.com"),
    ],
)
def test_mask_text(raw: str, hidden: str, kept: str) -> None:
    masked = mask_text(raw)
    assert hidden not in masked and kept in masked


@pytest.mark.parametrize(
    "text", ["POST /v1/chat/completions 200", "request", "fast@127.0.0.1:8000", "", "ok"]
)
def test_mask_text_leaves_harmless_text_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_secrets_skips_only_gateway_owned_fields() -> None:
    event = {
        "event": "Authorization: Bearer abc.def.ghi",
        "status": "ok",
        "latency_ms": 1.5,
        "user_id": 3,
        "token": "plain-secret",
        "model": "sk-cg-AbCdEf0123456789xyz",
        "nested": {"password": "hunter2"},
        "missing": None,
    }
    masked = mask_secrets(None, "info", event)
    assert "abc.def.ghi" not in masked["event"]
    assert masked["token"] == MASK and masked["nested"] == {"password": MASK}
    assert "AbCdEf0123456789xyz" not in masked["model"]
    assert (masked["status"], masked["latency_ms"], masked["user_id"]) == ("ok", 1.5, 3)
    assert masked["missing"] is None


def test_json_renderer_copes_with_what_orjson_refuses() -> None:
    line = render_json({"big": 2**70, "when": datetime(2030, 1, 1, tzinfo=UTC), 1: "x"})
    decoded = json.loads(line)
    assert decoded["big"] == 2**70 and decoded["1"] == "x"


def test_log_kinds() -> None:
    assert log_kind("chatgate.access") == "api"
    assert log_kind("chatgate.inference") == "inference"
    assert log_kind("chatgate.engines") == "inference"
    assert log_kind("alembic.runtime") == "system"


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    directory = tmp_path / "logs"
    configure_logging("info", json_output=True, log_dir=directory)
    yield directory
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers, root.level = saved
    structlog.reset_defaults()


def read_lines(directory: Path) -> dict[str, list[dict[str, object]]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines() if line]
        for path in directory.glob("*.log")
    }


async def test_no_canary_reaches_the_logs(
    log_dir: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp_path, url, upstream)
    canary_password = "canary-Password-91357"
    canary_key = "sk-cg-canaryKEY0000000000000000000000000000"
    canary_mail = "canary.person@example.org"
    async with start_gateway(settings, upstream) as gateway:
        account = await gateway.account()
        async with gateway.client() as client:
            await client.post(
                "/api/auth/login", json={"username": account.username, "password": canary_password}
            )
            await client.get("/v1/models", headers={"Authorization": f"Bearer {canary_key}"})
            await client.post(
                "/v1/chat/completions",
                headers=account.key_headers,
                json={
                    "model": "fake-model",
                    "messages": [{"role": "user", "content": f"mail {canary_mail}"}],
                },
            )
            await client.post(
                "/api/admin/users",
                headers=account.headers,
                json={"username": "x", "password": canary_password},
            )
        # The shapes in which secrets reach log lines in practice: echoed request bodies,
        # key=value dumps, headers, structured fields.
        logging.getLogger("chatgate.test").warning(
            'upstream said {"password": "%s"} key=%s Authorization: Bearer %s mail %s',
            canary_password,
            canary_key,
            account.token,
            canary_mail,
            extra={"password": canary_password, "api_key": account.api_key},
        )
    everything = "".join(path.read_text() for path in log_dir.glob("*.log"))
    for canary in (
        canary_password,
        canary_key,
        account.token,
        account.api_key,
        canary_mail,
        "canary.person",
    ):
        assert canary not in everything, f"{canary[:12]}… leaked into the logs"

    lines = read_lines(log_dir)
    request_lines = [line for line in lines["inference"] if line.get("event") == "request"]
    assert len(request_lines) == 1
    seed_fields = {
        "request_id",
        "user_id",
        "model",
        "ctx_len",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "status_code",
        "timestamp",
        "level",
    }
    assert seed_fields <= set(request_lines[0])
    assert request_lines[0]["user_id"] == account.user_id
    # One line per /v1 request: its usage line says what the access line would (middleware).
    assert not [line for line in lines["api"] if line.get("path") == "/v1/chat/completions"]
    assert request_lines[0]["status_code"] == 200 and request_lines[0]["route"] == "v1.chat"
    access = [line for line in lines["api"] if line.get("path") == "/api/admin/users"]
    assert access and access[0]["user_id"] == account.user_id
    refused = [line for line in lines["api"] if line.get("path") == "/v1/models"]
    assert refused and refused[0]["status_code"] == 401  # other routes keep their access line
    assert any("upstream said" in str(line["event"]) for line in lines["system"])
