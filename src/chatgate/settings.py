"""One typed settings object for the whole gateway (env prefix ``CHATGATE_``).

Sources, strongest first: constructor arguments, ``CHATGATE_*`` environment variables,
a ``.env`` file, a YAML config file (``CHATGATE_CONFIG_FILE``), then the defaults.

Reading settings has no side effects: nothing is created on disk here. The CLI
(``chatgate serve``) prepares the data directory and the JWT secret before the
app starts.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from chatgate.limits.policy import DEFAULT_ROLE_LIMITS

DEFAULT_MODEL_ID = "smollm2-135m"
MIN_SECRET_BYTES = 32
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changeme", "secret", "jwt-secret", "your-secret-key", "placeholder", "test"}
)


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "chatgate"


def parse_engine_spec(spec: str) -> tuple[str, str]:
    """Parse ``NAME=URL`` (URL may carry ``#upstream-model``) into (name, url)."""
    name, sep, url = spec.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise ValueError(f"engine must look like NAME=http://host:port, got {spec!r}")
    return name, url.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATGATE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- the YAML config file read by this object (also CHATGATE_CONFIG_FILE)
    config_file: Path | None = None

    # --- process / network
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    data_dir: Path = Field(default_factory=default_data_dir)
    development_mode: bool = False
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "info"
    log_format: Literal["json", "console"] = "json"
    log_to_files: bool = False  # api.log, inference.log, system.log under data_dir/logs
    otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318 (OTLP over HTTP)
    otel_service_name: str = "chatgate"

    # --- storage
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "chatgate"  # namespace of every key, so deployments can share a Redis
    # How long a gateway trusts an API key it resolved before reading it again. Changes made
    # through any gateway reach the others at once over Redis (fleet.py); this bounds the
    # rest (changes made by the CLI or in SQL, or while Redis is down).
    identity_cache_seconds: float = Field(5.0, ge=0.0)

    # --- auth
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "chatgate"
    jwt_audience: str = "chatgate"
    access_token_minutes: int = 30
    refresh_token_days: int = 7
    admin_password: SecretStr | None = None
    metrics_token: SecretStr | None = None

    # --- engines
    embedded_engine: bool = True
    embedded_model_path: Path | None = None
    # llama.cpp's llama-server (the project builds it; default: beside this Python).
    llama_server: Path | None = None
    embedded_threads: int = 2
    # Slots: requests the embedded engine generates at the same time (continuous batching).
    embedded_parallel: int = 5
    embedded_ctx: int = 8192  # tokens per slot (prompt + answer)
    embedded_kv_tokens: int = 16384  # one KV cache shared by the slots (~23 KB a token)
    # RAM for llama.cpp's cache of evaluated prompts (0: off): conversations taking turns
    # resume from their saved state instead of evaluating their history again.
    embedded_prompt_cache_mb: int = 1024
    engines: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_model: str = DEFAULT_MODEL_ID
    engine_connect_timeout: float = 5.0
    engine_ttft_timeout: float = 120.0
    engine_idle_timeout: float = 60.0
    engine_max_connections: int = 1000
    # Routing: consecutive failures that open an endpoint's circuit, and how long it stays
    # open before one trial request; conversations stick to one replica (bounded map).
    engine_circuit_failures: int = 3
    engine_circuit_open_seconds: float = 15.0
    engine_affinity_sessions: int = 10_000
    engine_health_interval: float = 10.0
    # Supervised engines: a crash loop (this many exits within the window) stops restarts
    # and marks the engine failed with a diagnosis; an engine that cannot produce one token
    # for engine_wedged_seconds is restarted. Every engine is proven by a 1-token
    # generation before it is ready, and again every engine_probe_interval when idle.
    # Admission: requests beyond the engines' slots wait in the gateway, fairly between
    # users (interactive web chat first, then /v1, then batch keys); this many at most,
    # each at most this long, then 503 engine_busy with Retry-After. Engines that say
    # nothing about their slots count as engine_default_slots.
    engine_fair_queue: bool = True  # off: requests go straight to the engines (their FCFS)
    engine_queue_max: int = 256
    engine_queue_timeout: float = 120.0
    engine_default_slots: int = 64
    # With redis_url, gateways sharing the Redis (and redis_prefix) share each model's slots
    # and one fair queue; a gateway that dies gives its slots back within this lease.
    engine_queue_shared: bool = True
    engine_queue_lease_seconds: float = Field(default=10.0, gt=0)
    engine_crash_limit: int = 3
    engine_crash_window_seconds: float = 300.0
    engine_wedged_seconds: float = 180.0
    engine_probe_interval: float = 60.0
    # Model profiles: the shipped ones plus an admin directory of *.yaml (same id overrides).
    profiles_dir: Path | None = None
    # Python that runs vLLM (its own venv or container image); managed vLLM engines use it.
    vllm_python: str | None = None
    # Switching models: how long in-flight requests may finish before the old engine stops,
    # and how long the new engine may take to become ready.
    switch_drain_seconds: float = 60.0
    switch_ready_seconds: float = 900.0
    # Several gateway processes: the one holding this lease (Redis, else a file lock) runs
    # the local engine and switches; a dead leader is replaced within it
    # (engines/runtime/leader.py).
    engine_leader_lease_seconds: float = Field(default=10.0, ge=1.0)

    # --- limits (role defaults; admins override per role, user and key)
    ratelimit_defaults: dict[str, dict[str, int | None]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_ROLE_LIMITS.items()}
    )
    ratelimit_retry_seconds: float = 5.0
    login_failures_per_user: int = 10
    login_failures_per_ip: int = 50
    login_window_minutes: int = 15

    # --- request caps (checked before the engine is called)
    max_body_bytes: int = 2_000_000
    max_messages: int = 500
    max_prompt_chars: int = 400_000
    max_tokens_cap: int = 8192
    max_n: int = 8  # /v1 `n` and legacy `best_of`: answers one request may ask for
    # HTTP server limits against slow or hostile clients (cli/server_limits.py): the
    # request line and headers together, the time a client may take to send them, idle
    # keep-alive, and connections + requests at once (beyond it: 503).
    max_header_bytes: int = 16 * 1024
    header_timeout_seconds: float = 15.0
    keep_alive_seconds: int = 5
    max_concurrency: int | None = 4096
    # The answer length when neither the request nor the model's profile sets one
    # (default_params.max_tokens): no request runs unbounded on an engine.
    default_max_tokens: int = 2048

    # --- web chat generations
    generation_orphan_seconds: float = 600.0
    generation_retain_seconds: float = 120.0
    auto_title: bool = True
    # A running answer saves its text every 2 s; one whose last save is older than this
    # lease has no live gateway behind it (chat/answers.py) and is ended by any gateway.
    answer_lease_seconds: float = Field(60.0, ge=4.0)
    # /v1/responses answers stored for previous_response_id and GET (OpenAI keeps 30
    # days); older ones are neither served nor kept (responses_api/store.py).
    responses_retention_days: float = Field(30.0, gt=0)

    # --- durability: what the database cannot take now is journaled under the data dir
    # and replayed when it is back (usage/outbox.py). 256 MiB keeps a 10-minute outage at
    # 100 requests/s (60,000 rows of ~0.5 KB) with room to spare.
    journal_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)

    # --- training data (datasets/): whether a user who never chose in Settings lets their
    # rated conversations train models. Opted in by default on a self-hosted gateway (the
    # operator owns the data and the model); false makes it opt-in for everyone.
    training_default_opt_in: bool = True

    # --- fine-tuning (finetune/): the trainer runs in its own venv (torch, peft, mlflow are
    # never imported by the gateway). Defaults: .venv-train/bin/python and
    # tools/train/finetune.py of the source tree. MLflow: embedded (SQLite + files under
    # data_dir/mlflow) unless a tracking server is named (CHATGATE_MLFLOW_TRACKING_URI).
    train_python: str | None = None
    train_script: Path | None = None
    # One torch thread: the trainer shares the CPU with the engines this gateway serves,
    # and two threads under contention were 3-10x slower per step than one (docs/finetuning.md).
    train_threads: int = Field(1, ge=1)
    mlflow_tracking_uri: str | None = None
    # A running job's owner renews its lease every quarter of this; a job whose lease ran
    # out has no live gateway behind it and any gateway ends it as interrupted.
    finetune_lease_seconds: float = Field(60.0, ge=4.0)

    # --- shutdown: SIGTERM to exit within this (streams run until it less a margin, then
    # end with `server_shutting_down`, saved and billed `interrupted`). See shutdown.py.
    shutdown_grace_seconds: float = Field(30.0, ge=1.0, le=3600.0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        given = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        config_file = given.get("config_file") or os.environ.get("CHATGATE_CONFIG_FILE")
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"config file {str(path)!r} does not exist")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return (*sources, file_secret_settings)

    @field_validator("cors_origins", "engines", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("engines")
    @classmethod
    def _check_engines(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_engine_spec(spec)
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'chatgate.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "jwt_secret"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def attached_engines(self) -> list[tuple[str, str]]:
        return [parse_engine_spec(spec) for spec in self.engines]

    def binds_loopback(self) -> bool:
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def secret_problem(self) -> str | None:
        """Why the configured JWT secret is unsafe, or None when it is fine."""
        if self.jwt_secret is None:
            return "no JWT secret is configured"
        raw = self.jwt_secret.get_secret_value()
        if raw.strip().lower() in PLACEHOLDER_SECRETS:
            return "the JWT secret is a well-known placeholder"
        if len(raw.encode()) < MIN_SECRET_BYTES:
            return f"the JWT secret is shorter than {MIN_SECRET_BYTES} bytes"
        return None

    def masked(self) -> dict[str, Any]:
        """Effective configuration with secrets and credentials masked."""
        data = self.model_dump(mode="json")
        for key in ("jwt_secret", "admin_password", "metrics_token"):
            if data.get(key):
                data[key] = "********"
        data["database_url"] = mask_url(self.resolved_database_url)
        if self.redis_url:
            data["redis_url"] = mask_url(self.redis_url)
        data["engines"] = [_mask_engine(spec) for spec in self.engines]
        if self.mlflow_tracking_uri:
            data["mlflow_tracking_uri"] = mask_url(self.mlflow_tracking_uri)
        return data


_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "secret", "token", "api_key", "apikey"})


def mask_url(url: str) -> str:
    """Hide the credentials in a URL: ``postgresql://user:pw@host/db?password=pw``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.startswith("sqlite"):  # file paths may contain "@"; no credentials
        return url
    rest, hash_sep, fragment = rest.partition("#")
    rest, query_sep, query = rest.partition("?")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        rest = f"{creds.split(':', 1)[0]}:****@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
        query = urlencode(
            [(key, "****" if key.lower() in _SECRET_PARAMS else value) for key, value in pairs],
            safe="*/:",
        )
    return f"{scheme}://{rest}{query_sep}{query}{hash_sep}{fragment}"


def _mask_engine(spec: str) -> str:
    name, sep, url = spec.partition("=")
    return f"{name}{sep}{mask_url(url.strip())}" if sep else spec
