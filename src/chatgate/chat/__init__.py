"""Web chat: ``POST /api/chat`` generations streamed as SSE, resumable and stoppable."""
