"""A stand-in for vLLM started as a pooling model (``--runner pooling``), for supervisor
tests (stdlib only, starts in milliseconds).

Like the real one it answers ``/health``, ``/v1/models`` and ``POST /v1/embeddings`` (one
4-number vector per input), and 404 to every generation (``/v1/completions``,
``/v1/chat/completions``): it cannot generate. ``--bad-vectors`` answers embeddings
without numbers (a broken engine that still answers 200).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BAD_VECTORS = False  # set by main()


class PoolingHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json({})
        elif self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": "pooling", "object": "model"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.path != "/v1/embeddings":
            self.send_error(404)  # vLLM's pooling runner has no generation routes
            return
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vector: list[object] = [None] * 4 if BAD_VECTORS else [0.5, -0.5, 0.5, -0.5]
        data = [
            {"object": "embedding", "index": i, "embedding": vector} for i in range(len(inputs))
        ]
        tokens = len(inputs)
        self._json({"object": "list", "data": data, "model": body.get("model"),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip

    def _json(self, data: object) -> None:
        encoded = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


def main() -> None:
    global BAD_VECTORS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bad-vectors", action="store_true")
    args = parser.parse_args()
    BAD_VECTORS = args.bad_vectors
    server = ThreadingHTTPServer(("127.0.0.1", args.port), PoolingHandler)
    print(f"fake pooling engine listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
