"""A stand-in engine server for supervisor tests (stdlib only, starts in milliseconds).

Answers 200 with a model list on /v1/models and 404 elsewhere. Options make it
slow to start, fail at once, ignore SIGTERM or leave a helper process behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class ModelsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before listening")
    parser.add_argument("--exit-code", type=int, help="print a message and exit at once")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--helper-pid-file", type=Path, help="start a helper, write its pid")
    return parser.parse_args()


def start_helper(pid_file: Path) -> subprocess.Popen[bytes]:
    """A long-lived grandchild in the engine's process group."""
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pid_file.write_text(str(helper.pid))
    return helper


def main() -> None:
    args = parse_args()
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
