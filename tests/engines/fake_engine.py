"""A stand-in engine server for supervisor tests (stdlib only, starts in milliseconds).

Answers 200 with a model list on /v1/models, ``/health`` and a one-token completion on
POST /v1/completions and /v1/chat/completions. Options make it slow to start, fail at
once, ignore SIGTERM, leave a helper process behind, crash with SIGSEGV on its first
completion (as llama.cpp's AMX kernels did) or hang on completions (a wedged engine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OPTIONS: argparse.Namespace | None = None  # set by main()
COMPLETIONS = 0


class ModelsHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json({"status": "ok"})
        elif self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self.send_error(404)
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert OPTIONS is not None
        if OPTIONS.segfault_on_completion:
            print("fake engine: crashing in its first generation", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(60)  # the signal may land a moment later: never answer
        global COMPLETIONS
        COMPLETIONS += 1
        if OPTIONS.hang_completions or (
            OPTIONS.hang_after is not None and COMPLETIONS > OPTIONS.hang_after
        ):
            time.sleep(3600)
        self._json({"object": "text_completion", "choices": [{"index": 0, "text": "Hi"}]})

    def _json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before listening")
    parser.add_argument("--exit-code", type=int, help="print a message and exit at once")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--helper-pid-file", type=Path, help="start a helper, write its pid")
    parser.add_argument("--segfault-on-completion", action="store_true")
    parser.add_argument("--hang-completions", action="store_true")
    parser.add_argument("--hang-after", type=int, help="hang on completions after this many")
    return parser.parse_args()


def start_helper(pid_file: Path) -> subprocess.Popen[bytes]:
    """A long-lived grandchild in the engine's process group."""
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pid_file.write_text(str(helper.pid))
    return helper


def main() -> None:
    global OPTIONS
    args = OPTIONS = parse_args()
    if args.exit_code is not None:
        print(f"fake engine: failing on purpose with code {args.exit_code}", file=sys.stderr)
        sys.exit(args.exit_code)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.helper_pid_file:
        start_helper(args.helper_pid_file)
    time.sleep(args.delay)
    server = ThreadingHTTPServer((args.host, args.port), ModelsHandler)
    print(f"fake engine listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
