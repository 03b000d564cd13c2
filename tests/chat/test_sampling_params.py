"""``chat.service.sampling_params``: what a web-chat turn asks the engine for."""

from __future__ import annotations

from chatgate.chat.schemas import SamplingParams
from chatgate.chat.service import sampling_params
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.settings import Settings


def test_profile_defaults_apply_but_never_several_answers() -> None:
    model = ModelEntry(
        id="m",
        name="M",
        endpoints=[],
        default_params={"temperature": 0.3, "n": 2, "best_of": 3, "max_tokens": 64},
    )
    params = sampling_params(SamplingParams(top_p=0.5), model, {}, Settings())
    # One chat stream carries one answer: a profile's n (for /v1 clients) is not applied.
    assert params == {"temperature": 0.3, "top_p": 0.5, "max_tokens": 64}
