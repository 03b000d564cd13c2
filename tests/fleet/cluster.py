"""A live fleet on loopback: ``chatgate serve`` replicas sharing one PostgreSQL database and
one Redis key prefix, in front of one engine, behind a private nginx whose ``upstream`` is
plain round-robin (no stickiness), as an operator would run it.

Each replica has its own port and its own data dir (its usage journal is local, as on a pod),
and all share the JWT secret, the database and the Redis prefix. nginx runs from a config in
a temp dir (``nginx -c``, ``daemon off``, one process, so round-robin is one rotation), with
the SSE-friendly proxy settings of ``deploy/nginx/nginx.conf`` plus what a rolling restart
needs: a request the replica refused while draining (503, nothing done) or a connection it
closed is passed to the next replica (``proxy_next_upstream ... http_503 non_idempotent``,
request bodies buffered so a POST can be sent again). Every response says which replica
answered (``X-Upstream-Addr``), so tests find the owner of a generation without guessing.

Used by ``tests/fleet/test_live_fleet.py`` and ``bench/fleet.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from tests.conftest import PG_ADMIN_DSN, PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT
from tests.e2e.harness import Served, serve_env
from tests.helpers import free_port

UPSTREAM_HEADER = "x-upstream-addr"
JWT_SECRET = "fleet-live-" + "s" * 40

NGINX_CONF = """\
worker_processes 1;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format fleet '$request_method $uri $status up=$upstream_addr '
                     'up_status=$upstream_status t=$request_time';
    access_log {tmp}/access.log fleet;
    upstream chatgate_fleet {{
{servers}
        keepalive 64;
        keepalive_timeout 4s;  # below the gateway's idle keep-alive (5 s)
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 4m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;
        proxy_connect_timeout 2s;
        # A draining replica answers 503 (Retry-After, nothing done) and a stopped one
        # refuses or closes the connection: the request goes to the next replica, a POST
        # too (its body is buffered: proxy_request_buffering stays on).
        proxy_next_upstream error timeout http_502 http_503 non_idempotent;
        proxy_next_upstream_timeout 30s;
        add_header X-Upstream-Addr $upstream_addr always;
        location / {{
            proxy_pass http://chatgate_fleet;
        }}
    }}
}}
"""


def render_nginx(tmp: Path, port: int, upstreams: Sequence[str]) -> str:
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)
    return NGINX_CONF.format(tmp=tmp, port=port, servers=servers)


@dataclass
class Nginx:
    """A private nginx in front of ``upstreams`` (``host:port`` each)."""

    binary: str
    workdir: Path
    upstreams: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(render_nginx(self.workdir, self.port, self.upstreams))
        argv = [self.binary, "-p", str(self.workdir), "-e", str(self.workdir / "error.log")]
        argv += ["-c", str(conf)]
        options = f"daemon off; master_process off; pid {self.workdir / 'nginx.pid'};"
        checked = subprocess.run([*argv, "-t", "-g", options], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        log = (self.workdir / "nginx.out").open("wb")
        with log:
            self.process = subprocess.Popen(
                [*argv, "-g", options], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log()}")
            try:
                httpx.get(self.url + "/nginx-probe", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen: {self.error_log()}")

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def upstream_of(response: httpx.Response) -> str:
    """The replica that answered (after nginx's retries, the last one it tried)."""
    return response.headers[UPSTREAM_HEADER].split(",")[-1].strip()


@dataclass
class FleetConfig:
    """What every replica of one fleet shares."""

    engine: str  # NAME=URL for ``--engine``
    database_url: str
    redis_url: str | None
    prefix: str
    env: dict[str, str] = field(default_factory=dict)  # extra CHATGATE_* settings


@dataclass
class Fleet:
    """Replicas (``Served``), started and stopped one by one, behind one nginx."""

    config: FleetConfig
    root: Path
    replicas: list[Served]
    nginx: Nginx | None = None

    @classmethod
    def plan(cls, config: FleetConfig, root: Path, size: int) -> Fleet:
        """Ports and data dirs for ``size`` replicas (nothing started yet)."""
        replicas = [make_replica(config, root / f"replica-{i}", free_port()) for i in range(size)]
        return cls(config, root, replicas)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{r.port}" for r in self.replicas]

    def at(self, address: str) -> Served:
        return next(r for r in self.replicas if f"127.0.0.1:{r.port}" == address)

    def others(self, address: str) -> list[Served]:
        return [r for r in self.replicas if f"127.0.0.1:{r.port}" != address]

    async def start(self, nginx_binary: str | None) -> None:
        """The first replica migrates the fresh database and creates the admin alone;
        the others then start together, as a scaled-up deployment's pods do."""
        first, *rest = self.replicas
        await asyncio.to_thread(first.start)
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in rest))
        if nginx_binary is not None:
            self.nginx = Nginx(nginx_binary, self.root / "nginx", self.addresses)
            await asyncio.to_thread(self.nginx.start)

    async def stop(self) -> None:
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in self.replicas))

    async def ensure_running(self) -> None:
        """Every replica up (a step that failed half-way may have left one stopped)."""
        down = [r for r in self.replicas if r.process is None or r.process.poll() is not None]
        for replica in down:
            replica.process = None
            await asyncio.to_thread(replica.start)


def make_replica(config: FleetConfig, data_dir: Path, port: int) -> Served:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = serve_env(data_dir, port, config.database_url)
    env.update(
        CHATGATE_JWT_SECRET=JWT_SECRET,
        CHATGATE_EMBEDDED_ENGINE="false",
        CHATGATE_AUTO_TITLE="false",
        CHATGATE_RATELIMIT_DEFAULTS='{"user": {}, "admin": {}}',
        CHATGATE_REDIS_PREFIX=config.prefix,
        **config.env,
    )
    if config.redis_url:
        env["CHATGATE_REDIS_URL"] = config.redis_url
    return Served(data_dir, port, env, args=["--no-embedded", "--engine", config.engine])


def kill_hard(replica: Served) -> None:
    """``kill -9`` of the replica's whole process group: no drain, no cleanup."""
    assert replica.process is not None
    os.killpg(replica.process.pid, signal.SIGKILL)
    replica.process.wait(timeout=30)
    replica.process = None


def terminate(replica: Served, timeout: float) -> int:
    """SIGTERM (the drain) and wait for the exit; its exit code."""
    assert replica.process is not None
    replica.process.send_signal(signal.SIGTERM)
    code = replica.process.wait(timeout=timeout)
    replica.process = None
    return code


async def create_database() -> tuple[str, str]:
    """A fresh PostgreSQL database for one run: (name, SQLAlchemy URL)."""
    name = f"chatgate_fleet_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def redis_url() -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


async def drop_prefix(prefix: str) -> None:
    """Every Redis key of one run (``<prefix>:…``, and the admission queue's ``<prefix>-adm…``)."""
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def database_dsn(name: str) -> str:
    """The plain (asyncpg) DSN of a run's database, for reading what the fleet saved."""
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
