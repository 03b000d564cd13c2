"""Anthropic's Messages API (``/v1/messages``) on top of the gateway's chat-completions path."""
