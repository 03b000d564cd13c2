"""deploy/nginx/nginx.conf, live: Debian's nginx on loopback in front of a real gateway.

The config is rendered from the shipped file with only what a test machine needs changed
(upstream address, listen address, temp/pid paths, mime.types path), and the gateway's own
``X-Accel-Buffering: no`` header is ignored so that only the config keeps streams unbuffered.
A stream of 20 chunks sent 200 ms apart must reach the client chunk by chunk: the first one
long before the last, which proves nginx does not buffer the SSE response.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from chatgate.db import migrate
from tests.conftest import gateway_settings
from tests.deploy.tooling import DEPLOY, require_tool
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, free_port, start_gateway

NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
NGINX_TLS_CONF = DEPLOY / "nginx" / "nginx-tls.conf"
NGINX_INSTALL = "Debian: apt-get install -y nginx"
MIME_TYPES = Path("/etc/nginx/mime.types")
SLOW = "[[chunks=20 delay=0.2]] tell me a story"


def render(conf: str, upstream: str, listen: str, tmp: Path) -> str:
    """The shipped config, pointed at a loopback gateway, with its state under tmp."""
    text, n = re.subn(r"server gateway:8080\b", f"server {upstream}", conf)
    assert n == 1, "nginx.conf must proxy to the compose service gateway:8080"
    text, n = re.subn(r"listen 80 default_server;", f"listen {listen} default_server;", text)
    assert n == 1
    text = text.replace("include mime.types;", f"include {MIME_TYPES};")
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # The gateway sends X-Accel-Buffering: no, which alone would stop nginx buffering. Ignore it
    # here, so that the test proves the config's own proxy_buffering off.
    extra = f"{temp}\n    proxy_ignore_headers X-Accel-Buffering;"
    return text.replace("http {\n", f"http {{\n{extra}\n", 1)


def nginx_test(nginx: str, conf_file: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-t", "-p", str(tmp), "-c", str(conf_file), "-g", f"pid {tmp / 'nginx.pid'};"],
        capture_output=True,
        text=True,
    )


@dataclass
class Proxied:
    url: str
    gateway: Gateway
    account: Account

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, verify=False)


async def _wait_port(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(200):
        if proc.returncode is not None:
            raise AssertionError(f"nginx exited: {log.read_text()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nginx did not listen on {port}: {log.read_text()}")


@pytest_asyncio.fixture(scope="module")
async def proxied(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Proxied]:
    nginx = require_tool("nginx", NGINX_INSTALL)
    if not MIME_TYPES.is_file():
        pytest.skip(f"{MIME_TYPES} is missing ({NGINX_INSTALL})")
    tmp = tmp_path_factory.mktemp("nginx-live")
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    async with start_gateway(gateway_settings(tmp, url, upstream), upstream) as gw:
        port = free_port()
        conf = render(
            NGINX_CONF.read_text(), gw.url.removeprefix("http://"), f"127.0.0.1:{port}", tmp
        )
        conf_file = tmp / "nginx.conf"
        conf_file.write_text(conf)
        checked = nginx_test(nginx, conf_file, tmp)
        assert checked.returncode == 0, checked.stderr
        log = tmp / "nginx.out"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                nginx, "-p", str(tmp), "-c", str(conf_file),
                "-g", f"daemon off; master_process off; pid {tmp / 'nginx.pid'};",
                stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            await _wait_port(port, proc, log)
            yield Proxied(f"http://127.0.0.1:{port}", gw, await gw.account())
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def timed_chunks(response: httpx.Response) -> tuple[list[float], list[str]]:
    """Arrival times (since the request began) of each SSE data line, and the lines."""
    times: list[float] = []
    lines: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            times.append(time.monotonic())
            lines.append(line[5:].strip())
    return times, lines


def content_of(lines: list[str]) -> str:
    text = []
    for raw in lines:
        if raw == "[DONE]":
            continue
        data = json.loads(raw)
        for choice in data.get("choices", []) if isinstance(data, dict) else []:
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def test_v1_stream_through_nginx_is_not_buffered(proxied: Proxied) -> None:
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": SLOW}],
    }
    async with proxied.client() as client:
        start = time.monotonic()
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=proxied.account.key_headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers.get("x-content-type-options") == "nosniff"
            times, lines = await timed_chunks(response)
    first, total = times[0] - start, times[-1] - start
    assert lines[-1] == "[DONE]"
    assert len(content_of(lines)) > 0
    assert first < 1.5, f"first chunk after {first:.2f}s: nginx buffered the stream"
    assert total >= 3.5, f"the whole stream took only {total:.2f}s"
    # chunks arrive spread out, not in one burst at the end
    assert times[len(times) // 2] - start < total - 1.0


async def test_web_chat_stream_through_nginx_is_not_buffered(proxied: Proxied) -> None:
    async with proxied.client() as client:
        start = time.monotonic()
        async with client.stream(
            "POST", "/api/chat", json={"message": SLOW}, headers=proxied.account.headers
        ) as response:
            assert response.status_code == 200
            assert response.headers.get("x-accel-buffering") == "no"
            times, _ = await timed_chunks(response)
    first, total = times[0] - start, times[-1] - start
    assert first < 1.5, f"first event after {first:.2f}s: nginx buffered the stream"
    assert total >= 3.5


async def test_v1_non_stream_health_and_headers_through_nginx(proxied: Proxied) -> None:
    async with proxied.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers=proxied.account.key_headers,
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
        assert response.headers.get("x-request-id")

        models = await client.get("/v1/models", headers=proxied.account.key_headers)
        assert models.status_code == 200
        assert "fake-model" in {m["id"] for m in models.json()["data"]}

        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"
        assert health.headers["x-frame-options"] == "DENY"
        # the gateway's copy is hidden: exactly one header, not two
        assert health.headers.get_list("x-content-type-options") == ["nosniff"]
        assert "server" not in health.headers or "nginx/" not in health.headers["server"]

        ready = await client.get("/health/ready")
        assert ready.status_code == 200

        assert (await client.get("/metrics")).status_code == 403


async def test_request_size_limit(proxied: Proxied) -> None:
    async with proxied.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={**proxied.account.key_headers, "content-type": "application/json"},
            content=b"x" * (5 * 1024 * 1024),
        )
    assert response.status_code == 413


def test_tls_variant_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_tool("nginx", NGINX_INSTALL)
    openssl = require_tool("openssl", "Debian: apt-get install -y openssl")
    if not MIME_TYPES.is_file():
        pytest.skip(f"{MIME_TYPES} is missing ({NGINX_INSTALL})")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert), "-days", "1"],
        check=True, capture_output=True,
    )
    conf = render(NGINX_TLS_CONF.read_text(), "127.0.0.1:9", f"127.0.0.1:{free_port()}", tmp_path)
    conf = conf.replace("/etc/nginx/certs/fullchain.pem", str(cert))
    conf = conf.replace("/etc/nginx/certs/privkey.pem", str(key))
    conf = conf.replace("listen 443 ssl", f"listen 127.0.0.1:{free_port()} ssl")
    conf_file = tmp_path / "nginx.conf"
    conf_file.write_text(conf)
    checked = nginx_test(nginx, conf_file, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "Strict-Transport-Security" in conf


def test_sse_locations_are_configured_for_streaming() -> None:
    """Static view of the same promises, for machines without nginx."""
    for path in (NGINX_CONF, NGINX_TLS_CONF):
        text = path.read_text()
        for location in ("location /api/chat {", "location /v1/ {"):
            block = text.split(location, 1)[1].split("\n        }", 1)[0]
            assert "proxy_buffering off;" in block, (path.name, location)
            assert "proxy_http_version 1.1;" in block
            assert 'proxy_set_header Connection "";' in block
            assert re.search(r"proxy_read_timeout (\d+)s;", block)
            timeout = int(re.search(r"proxy_read_timeout (\d+)s;", block).group(1))  # type: ignore[union-attr]
            assert timeout >= 600
            assert "gzip on" not in block
        assert "limit_req_zone $binary_remote_addr" in text
        assert "client_max_body_size" in text
        assert re.search(r"^\s*gzip off;", text, re.M)
