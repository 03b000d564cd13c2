"""Errors, models and embeddings through the official ``openai`` SDK: the gateway's errors
must surface as the SDK's typed exceptions with their status, code and param, and the
embeddings the SDK decodes (floats, base64, and its default: base64 decoded for the
caller) must be one vector per input. Run by ``openai_client.py``.
"""

from __future__ import annotations

import array
import base64
import math
import re
from typing import Any

import openai
from sdk_support import Context, Report, resolve

HELLO = [{"role": "user", "content": "hi"}]


def other_client(context: Context, api_key: str) -> Any:
    """A client of the same kind with another key."""
    kind = openai.OpenAI if context.kind == "sync" else openai.AsyncOpenAI
    return kind(base_url=context.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)


async def expect_error(call: Any, error: type[openai.APIStatusError]) -> openai.APIStatusError:
    try:
        await resolve(call())
    except error as exc:
        return exc
    raise AssertionError(f"expected {error.__name__}")


async def errors(context: Context) -> Report:
    wrong = other_client(context, "sk-cg-wrong")
    try:
        unauthorized = await expect_error(
            lambda: wrong.chat.completions.create(model=context.model, messages=HELLO),
            openai.AuthenticationError,
        )
    finally:
        await resolve(wrong.close())
    assert unauthorized.status_code == 401, unauthorized
    create = context.client.chat.completions.create
    unknown = await expect_error(
        lambda: create(model="no-such-model", messages=HELLO, max_tokens=2), openai.NotFoundError
    )
    assert unknown.status_code == 404 and unknown.code == "model_not_found", unknown.body
    invalid = await expect_error(
        lambda: create(model=context.model, messages=HELLO, max_tokens=2, temperature=5.0),
        openai.BadRequestError,
    )
    assert invalid.status_code == 400 and invalid.param == "temperature", invalid.body
    return {
        "401": unauthorized.body,
        "404": unknown.body,
        "400": {"param": invalid.param, "code": invalid.code},
    }


INTERNALS = re.compile(r"Traceback|\.py\b|\.cpp\b|/srv/|/usr/|/home/|/work/")


async def engine_rejection(context: Context) -> Report:
    """What the engine refuses is the client's 400 (OpenAI refuses an invalid schema so),
    with the engine's reason and none of its internals (file paths, tracebacks)."""
    if context.strict:  # the fake engine fails with a message full of internals when told
        options: dict[str, Any] = {"messages": [{"role": "user", "content": "[[status=400 leak]]"}]}
    else:  # llama-server cannot make a grammar of an unknown type: its own 400
        options = {
            "messages": HELLO,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "broken",
                    "schema": {"type": "object", "properties": {"a": {"type": "strange"}}},
                },
            },
        }
    create = context.client.chat.completions.create
    refused = await expect_error(
        lambda: create(model=context.model, max_tokens=4, **options), openai.BadRequestError
    )
    assert refused.status_code == 400, refused
    assert isinstance(refused.body, dict) and refused.body.get("message"), refused.body
    assert not INTERNALS.search(refused.body["message"]), refused.body
    return {"error": refused.body}


async def models(context: Context) -> Report:
    page = await resolve(context.client.models.list())
    ids = [model.id for model in page.data]
    assert context.model in ids, ids
    assert all(model.object == "model" and model.owned_by for model in page.data), page
    model = await resolve(context.client.models.retrieve(context.model))
    assert model.id == context.model and model.object == "model", model
    missing = await expect_error(
        lambda: context.client.models.retrieve("no-such-model"), openai.NotFoundError
    )
    assert missing.status_code == 404, missing
    return {"ids": ids}


def check_embeddings(response: Any, model: str, inputs: int) -> None:
    assert response.object == "list" and response.model == model, response
    assert [item.index for item in response.data] == list(range(inputs)), response.data
    assert all(item.object == "embedding" for item in response.data), response.data
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens, usage


def vectors_close(a: list[float], b: list[float]) -> bool:
    """The same vector, read back another way: equal length, cosine ~1 (an engine may round
    differently when it embeds a batch of another size; a misread encoding is far off)."""
    if len(a) != len(b) or not a:
        return False
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return norms > 0 and dot / norms > 0.999


async def embeddings(context: Context) -> Report:
    model = context.extra.get("embedding_model", context.model)
    create = context.client.embeddings.create
    inputs = ["The capital of France is Paris.", "Dragons breathe fire."]
    floats = await resolve(create(model=model, input=inputs, encoding_format="float"))
    check_embeddings(floats, model, 2)
    vectors = [item.embedding for item in floats.data]
    assert all(isinstance(x, float) for x in vectors[0]), vectors[0][:4]
    assert len(vectors[0]) == len(vectors[1]) > 0, [len(v) for v in vectors]
    assert vectors[0] != vectors[1], "two inputs, one vector"
    encoded = await resolve(create(model=model, input=inputs, encoding_format="base64"))
    check_embeddings(encoded, model, 2)
    decoded = [array.array("f", base64.b64decode(item.embedding)).tolist() for item in encoded.data]
    assert all(vectors_close(a, b) for a, b in zip(decoded, vectors, strict=True)), "base64"
    single = await resolve(create(model=model, input=inputs[0]))  # the SDK asks base64, decodes
    check_embeddings(single, model, 1)
    assert vectors_close(single.data[0].embedding, vectors[0]), "default encoding"
    assert floats.usage.prompt_tokens == encoded.usage.prompt_tokens, (floats.usage, encoded.usage)
    return {"dimensions": len(vectors[0]), "usage": floats.usage.model_dump()}


OTHER_CHECKS = {
    "errors": errors,
    "engine_rejection": engine_rejection,
    "models": models,
    "embeddings": embeddings,
}
