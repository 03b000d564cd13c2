"""The one prompt-size check: characters of text however the client encodes them."""

from __future__ import annotations

import pytest

from chatgate.errors import APIError
from chatgate.limits.caps import check_prompt_caps, text_chars
from chatgate.settings import Settings


def test_text_is_counted_in_every_encoding() -> None:
    assert text_chars("héllo") == 5
    assert text_chars([{"type": "text", "text": "ab"}, {"type": "image_url"}, "cd"]) == 4
    assert text_chars(["one", "two"]) == 6  # a legacy prompt list
    assert text_chars([1, 2, 3]) == 3  # token ids: one each
    assert text_chars(None) == 0


def test_caps_name_the_field() -> None:
    settings = Settings(max_messages=2, max_prompt_chars=10)
    check_prompt_caps([{"role": "user", "content": "x" * 10}], settings)
    with pytest.raises(APIError) as info:
        check_prompt_caps([{"role": "user", "content": [{"type": "text", "text": "x" * 11}]}],
                          settings)  # fmt: skip
    assert (info.value.code, info.value.param) == ("prompt_too_long", "messages")
    with pytest.raises(APIError) as info:
        check_prompt_caps([{"role": "user", "content": ""}] * 3, settings)
    assert info.value.code == "too_many_messages"
