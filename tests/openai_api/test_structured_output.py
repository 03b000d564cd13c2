"""``response_format``: OpenAI's shapes pass to the engine untouched (both engine kinds
read them natively: tests/openai_api/test_engine_semantics_e2e.py proves it on the real
llama.cpp engine), any other shape is a 400 naming the field, and an engine's refusal
reaches the client with its status and reason but without the engine's internals."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import jsonschema
import pytest
from sqlalchemy import select

from chatgate.auth.identity import Identity
from chatgate.db.models import RequestLog
from chatgate.engines.admission.pool import Ticket
from chatgate.engines.upstream.client import clean_message
from chatgate.engines.upstream.failover import EngineCall
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.engines.upstream.stream import StreamStats
from chatgate.errors import APIError
from chatgate.openai_api.request_schemas import CHAT_REQUEST
from chatgate.openai_api.service import RelayCall, _translate
from chatgate.openai_api.validation import validate_request
from chatgate.settings import Settings
from tests.fakes.upstream import LEAKY_MESSAGE
from tests.helpers import Gateway

SETTINGS = Settings(max_n=8, max_tokens_cap=8192)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
    "required": ["city", "sunny"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema",
               "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}  # fmt: skip

VALID_FORMATS: list[Any] = [
    None,
    {"type": "text"},
    {"type": "json_object"},
    {"type": "json_object", "schema": SCHEMA},  # llama.cpp's extension
    JSON_SCHEMA,
    {"type": "json_schema", "json_schema": {"name": "w"}},  # no schema: any object
    {"type": "json_schema", "json_schema": {"name": "w", "description": "d", "schema": SCHEMA}},
]
INVALID_FORMATS: list[tuple[Any, str]] = [
    ("json", "response_format"),
    ({}, "response_format.type"),
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": SCHEMA}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": ""}}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "x" * 65}},
     "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "w", "schema": "{}"}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "w", "strict": "yes"}},
     "response_format.json_schema.strict"),
    ({"type": "json_object", "schema": []}, "response_format.schema"),
]  # fmt: skip


def chat(response_format: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": response_format}  # fmt: skip


@pytest.mark.parametrize("response_format", VALID_FORMATS)
def test_openai_response_formats_pass(response_format: Any) -> None:
    body = chat(response_format)
    assert validate_request(body, "v1.chat", SETTINGS)["response_format"] == response_format
    assert jsonschema.Draft202012Validator(CHAT_REQUEST).is_valid(body)


@pytest.mark.parametrize(("response_format", "param"), INVALID_FORMATS)
def test_other_shapes_are_a_400_naming_the_field(response_format: Any, param: str) -> None:
    body = chat(response_format)
    with pytest.raises(APIError) as caught:
        validate_request(body, "v1.chat", SETTINGS)
    assert (caught.value.status_code, caught.value.param) == (400, param)
    # /openapi.json says the same (the contract test relies on it)
    assert not jsonschema.Draft202012Validator(CHAT_REQUEST).is_valid(body)


async def test_json_schema_reaches_the_engine_as_sent(gateway: Gateway) -> None:
    account = await gateway.account()
    request_id = f"so-{uuid.uuid4().hex}"
    body = {**chat(JSON_SCHEMA), "model": "fake-model"}
    async with gateway.client(headers=account.key_headers) as client:
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}
        )
        assert response.status_code == 200, response.text
        bad = await client.post("/v1/chat/completions", json={**body, "response_format": {}})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "response_format.type"
    sent = gateway.upstream.by_request_id(request_id).payload
    assert sent["response_format"] == JSON_SCHEMA


@pytest.mark.parametrize("stream", [False, True])
async def test_an_engine_refusal_keeps_its_status_without_internals(
    gateway: Gateway, stream: bool
) -> None:
    account = await gateway.account()
    request_id = f"so-{uuid.uuid4().hex}"
    body = {"model": "fake-model", "stream": stream, "response_format": JSON_SCHEMA,
            "messages": [{"role": "user", "content": "[[status=400 leak]]"}]}  # fmt: skip
    async with gateway.client(headers=account.key_headers) as client:
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}
        )
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("Invalid schema")
    for internal in ("/srv", "site-packages", "app.py", ".cpp", "Traceback"):
        assert internal not in message
    async with gateway.state.sessionmaker() as db:
        rows = await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id))
        assert [(row.status, row.status_code) for row in rows] == [("error", 400)]


def test_clean_message_keeps_the_reason() -> None:
    assert clean_message(LEAKY_MESSAGE) == 'Invalid schema: File "<path>", line 12 (<source>)'
    kept = "Value must be between 1 <= value <= 5, but got 6 (see /v1/chat/completions)"
    assert clean_message(kept) == kept
    assert clean_message(r"cannot open C:\models\x.gguf") == "cannot open <path>"
    assert clean_message("Traceback (most recent call last):\n x") == (
        "The engine refused the request"
    )


def test_an_engine_error_event_mid_stream_is_cleaned_too() -> None:
    """llama-server reports a failure after the stream began as an ``error`` event."""
    model = ModelEntry(id="m", name="m", endpoints=[])
    engine = EngineCall(model, "/chat/completions", {}, "r", Ticket("user:1"))
    call = RelayCall(cast(Any, None), Identity(1, "u", "user"), "v1.chat", engine, False, 0)
    line = b'data: {"error": {"code": 500, "message": "failed in /opt/llama/src/x.cpp:12"}}'
    relayed = _translate(call, line, StreamStats())
    assert relayed is not None
    error = json.loads(relayed.removeprefix(b"data: "))["error"]
    assert error == {"code": 500, "message": "failed in <path>"}
