"""A real `chatgate serve` subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_PASSWORD = "e2e-admin-password"
ENGINE_NAME = "smollm2-135m"


@dataclass
class Served:
    data_dir: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: list[Path] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # extra `chatgate serve` options

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log_path = self.data_dir / f"serve-{self.port}-{len(self.log)}.log"
        self.log.append(log_path)
        with open(log_path, "wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatgate", "serve", *self.args],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.stop()  # never left running (with its engine) after a failed start
            raise

    def _wait_ready(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"serve not ready:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "chatgate", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def engine_state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            (self.data_dir / "run" / f"engine-{ENGINE_NAME}.json").read_text()
        )
        return state

    def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        response = httpx.post(
            self.url + "/api/auth/login",
            json={"username": username, "password": password},
            timeout=60,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def serve_env(data_dir: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update(
        CHATGATE_DATA_DIR=str(data_dir),
        CHATGATE_PORT=str(port),
        CHATGATE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["CHATGATE_DATABASE_URL"] = database_url
    return env
