"""``chatgate bench``: a load generator over the OpenAI streaming API, a fast upstream,
a bare relay, and reports (JSON, Markdown, PNG)."""
