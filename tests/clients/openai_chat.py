"""Chat and legacy completions through the official ``openai`` SDK (sync and async clients):
the shapes the SDK parses, the limits the engine must honour, and usage counts that do
not drift between a streamed and a non-streamed answer. Run by ``openai_client.py``.

``strict`` (the fake engine) knows the answer: "Paris is the capital of France.", seven
tokens, prompt tokens = words of the messages. The fake ignores limits, stop and seed: the
test reads what the gateway sent it instead (the prompts carry markers such as "(limit)").
"""

from __future__ import annotations

from typing import Any

from sdk_support import Context, Report, drain, resolve

FAKE_ANSWER = "Paris is the capital of France."
QUESTION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]
LONG = [{"role": "user", "content": "Write a long story about a dragon and a knight. (limit)"}]
FINISH = {"stop", "length"}
SHORT = 8  # tokens: what a shape needs (a loaded 2-core machine makes a few per second)


def words(messages: list[dict[str, Any]]) -> int:
    """The fake engine's prompt count: words of every message."""
    return sum(len(str(message["content"]).split()) for message in messages)


def check_completion(completion: Any, context: Context, choices: int = 1) -> None:
    assert completion.object == "chat.completion", completion.object
    assert completion.id and isinstance(completion.created, int), completion
    assert completion.model == context.model, completion.model
    assert [choice.index for choice in completion.choices] == list(range(choices)), completion
    for choice in completion.choices:
        assert choice.message.role == "assistant", choice.message
        assert isinstance(choice.message.content, str), choice.message
        assert choice.finish_reason in FINISH, choice.finish_reason
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens >= 0, usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage


async def chat_create(context: Context) -> Report:
    completion = await resolve(
        context.client.chat.completions.create(
            model=context.model, messages=QUESTION, max_tokens=SHORT, temperature=0.0
        )
    )
    check_completion(completion, context)
    usage = completion.usage
    assert usage.completion_tokens <= SHORT, usage
    if context.strict:
        assert completion.choices[0].message.content == FAKE_ANSWER, completion
        assert completion.choices[0].finish_reason == "stop", completion
        assert (usage.prompt_tokens, usage.completion_tokens) == (words(QUESTION), 7), usage
    return {"usage": usage.model_dump(), "request_id": completion._request_id}


async def streamed(context: Context, messages: list[dict[str, Any]], **options: Any) -> Report:
    """A streamed answer with ``include_usage``: its text, finish reason and usage."""
    chunks = await drain(
        context.client.chat.completions.create(
            model=context.model, messages=messages, stream=True,
            stream_options={"include_usage": True}, **options,
        )
    )  # fmt: skip
    assert chunks, "no chunk"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks), chunks
    assert len({chunk.id for chunk in chunks}) == 1, "chunks of one answer share an id"
    *content, last = chunks
    # include_usage: a last chunk without choices carries the usage; the others carry none
    assert last.choices == [] and last.usage is not None, last
    assert all(chunk.usage is None for chunk in content), content
    finishes = [c.finish_reason for chunk in content for c in chunk.choices if c.finish_reason]
    assert len(finishes) == 1 and finishes[0] in FINISH, finishes
    text = "".join(c.delta.content or "" for chunk in content for c in chunk.choices)
    usage = last.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    return {"text": text, "finish": finishes[0], "usage": usage.model_dump()}


async def chat_stream(context: Context) -> Report:
    seen = await streamed(context, QUESTION, max_tokens=SHORT, temperature=0.0)
    assert seen["usage"]["completion_tokens"] <= SHORT, seen
    if context.strict:
        assert seen["text"] == FAKE_ANSWER and seen["finish"] == "stop", seen
        assert seen["usage"]["completion_tokens"] == 7, seen
    return seen


async def token_limits(context: Context) -> Report:
    """``max_tokens``, ``max_completion_tokens`` (LangChain sends only this one), streamed too."""
    create = context.client.chat.completions.create
    counts: dict[str, int] = {}
    for field in ("max_tokens", "max_completion_tokens"):
        completion = await resolve(create(model=context.model, messages=LONG, **{field: 5}))
        check_completion(completion, context)
        counts[field] = completion.usage.completion_tokens
    seen = await streamed(context, LONG, max_completion_tokens=5)
    counts["stream"] = seen["usage"]["completion_tokens"]
    if not context.strict:  # the fake ignores limits: the test reads what it was sent
        assert all(count <= 5 for count in counts.values()), counts
    return {"completion_tokens": counts}


async def stop_and_seed(context: Context) -> Report:
    create = context.client.chat.completions.create
    stop = [{"role": "user", "content": "Tell me about the city of Paris. (stop)"}]
    stopped = await resolve(
        create(model=context.model, messages=stop, stop=[" "], max_tokens=SHORT)
    )
    check_completion(stopped, context)
    text = stopped.choices[0].message.content
    seeded = [{"role": "user", "content": "Write one sentence about the sea. (seed)"}]
    answers = []
    for _ in range(2):
        completion = await resolve(
            create(
                model=context.model, messages=seeded, seed=1234, temperature=1.0, max_tokens=SHORT
            )
        )
        check_completion(completion, context)
        answers.append(completion.choices[0].message.content)
    if not context.strict:
        assert " " not in text, f"the stop sequence was not applied: {text!r}"
        assert answers[0] == answers[1], f"the same seed gave two answers: {answers}"
    return {"stopped": text, "seeded": answers}


async def n_choices(context: Context) -> Report:
    """``n=2``: two choices (fanned out where the engine cannot), never a silent one."""
    create = context.client.chat.completions.create
    one = await resolve(create(model=context.model, messages=QUESTION, max_tokens=4))
    two = await resolve(create(model=context.model, messages=QUESTION, max_tokens=4, n=2))
    check_completion(two, context, choices=2)
    usage = two.usage
    # OpenAI counts the prompt once and the completions of every choice
    assert usage.prompt_tokens == one.usage.prompt_tokens, (usage, one.usage)
    if not context.strict:  # the fake ignores limits
        assert usage.completion_tokens <= 8, usage
    else:
        assert [c.message.content for c in two.choices] == [FAKE_ANSWER] * 2, two
        assert usage.completion_tokens == 14, usage
    streamed_n = await n_streamed(context)
    return {"usage": usage.model_dump(), "stream": streamed_n}


async def n_streamed(context: Context) -> str:
    """A streamed ``n=2`` has choices 0 and 1, or is refused with a 400 naming ``n``."""
    import openai

    try:
        chunks = await drain(
            context.client.chat.completions.create(
                model=context.model, messages=QUESTION, max_tokens=4, n=2, stream=True
            )
        )
    except openai.BadRequestError as exc:
        assert exc.param == "n", exc.body
        return "refused"
    indexes = {choice.index for chunk in chunks for choice in chunk.choices}
    assert indexes == {0, 1}, indexes
    finished = [c.index for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert sorted(finished) == [0, 1], finished
    return "two choices"


async def logprobs(context: Context) -> Report:
    completion = await resolve(
        context.client.chat.completions.create(
            model=context.model, messages=QUESTION, max_tokens=4, logprobs=True, top_logprobs=2
        )
    )
    check_completion(completion, context)
    content = completion.choices[0].logprobs.content
    assert content and len(content) == completion.usage.completion_tokens, content
    for item in content:
        assert isinstance(item.token, str) and item.logprob <= 0, item
        assert 1 <= len(item.top_logprobs) <= 2, item
    return {"tokens": len(content)}


async def legacy_completions(context: Context) -> Report:
    completion = await resolve(
        context.client.completions.create(
            model=context.model, prompt="The capital of France is", max_tokens=5, temperature=0.0
        )
    )
    assert completion.object == "text_completion", completion
    assert completion.model == context.model and len(completion.choices) == 1, completion
    assert isinstance(completion.choices[0].text, str), completion
    assert completion.choices[0].finish_reason in FINISH, completion
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens <= 5, usage
    return {"text": completion.choices[0].text, "usage": usage.model_dump()}


async def usage_equal(context: Context) -> Report:
    """The same prompt, greedy and seeded: streamed and non-streamed usage are the same
    counts (the engine's, not an estimate)."""
    options: dict[str, Any] = {"max_tokens": SHORT, "temperature": 0.0, "seed": 7}
    plain = await resolve(
        context.client.chat.completions.create(model=context.model, messages=QUESTION, **options)
    )
    check_completion(plain, context)
    seen = await streamed(context, QUESTION, **options)
    usage, text = plain.usage.model_dump(), plain.choices[0].message.content
    assert seen["usage"]["prompt_tokens"] == usage["prompt_tokens"], (seen, usage)
    if seen["text"] == text:  # the same answer: the same number of tokens
        assert seen["usage"]["completion_tokens"] == usage["completion_tokens"], (seen, usage)
    return {"plain": usage, "streamed": seen["usage"], "same_text": seen["text"] == text}


CHAT_CHECKS = {
    "chat_create": chat_create,
    "chat_stream": chat_stream,
    "token_limits": token_limits,
    "stop_and_seed": stop_and_seed,
    "n_choices": n_choices,
    "logprobs": logprobs,
    "legacy_completions": legacy_completions,
    "usage_equal": usage_equal,
}
