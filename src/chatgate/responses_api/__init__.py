"""OpenAI's Responses API (``/v1/responses``) on top of the gateway's chat-completions path."""
