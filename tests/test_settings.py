"""Settings: CHATGATE_ env prefix, .env and YAML sources, CSV lists, engine specs, masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from chatgate.settings import Settings, mask_url, parse_engine_spec


@pytest.fixture(autouse=True)
def isolated(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No CHATGATE_ variables from the outside, and no stray .env in the working directory."""
    monkeypatch.chdir(tmp_path)


def test_defaults_have_no_side_effects(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.host == "127.0.0.1" and settings.port == 8080
    assert settings.development_mode is False
    assert settings.access_token_minutes == 30
    assert settings.engines == [] and settings.cors_origins == []
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'data'}/chatgate.db"
    assert settings.is_sqlite
    assert not (tmp_path / "data").exists()


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_PORT", "9191")
    monkeypatch.setenv("CHATGATE_HOST", "0.0.0.0")
    monkeypatch.setenv("CHATGATE_DEVELOPMENT_MODE", "true")
    monkeypatch.setenv("CHATGATE_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("CHATGATE_ACCESS_TOKEN_MINUTES", "5")
    monkeypatch.setenv("CHATGATE_DATABASE_URL", "postgresql+asyncpg://u:p@db/chat")
    monkeypatch.setenv("PORT", "1")  # unprefixed: ignored
    monkeypatch.setenv("JWT_SECRET", "unprefixed")
    settings = Settings()
    assert settings.port == 9191 and settings.host == "0.0.0.0"
    assert settings.development_mode is True
    assert isinstance(settings.jwt_secret, SecretStr)
    assert settings.jwt_secret.get_secret_value() == "s" * 40
    assert settings.access_token_minutes == 5
    assert not settings.is_sqlite
    # Explicit arguments win over the environment.
    assert Settings(port=1234).port == 1234


def test_env_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("CHATGATE_PORT=7070\nCHATGATE_LOG_LEVEL=debug\n")
    settings = Settings()
    assert settings.port == 7070 and settings.log_level == "debug"
    monkeypatch.setenv("CHATGATE_PORT", "6060")
    assert Settings().port == 6060


def test_yaml_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "chatgate.yaml"
    config.write_text(
        "port: 8181\n"
        "access_token_minutes: 12\n"
        "engines:\n  - big=http://gpu-1:8000\n  - big=http://gpu-2:8000\n"
        "cors_origins: [https://chat.example.com]\n"
    )
    monkeypatch.setenv("CHATGATE_CONFIG_FILE", str(config))
    settings = Settings()
    assert settings.port == 8181 and settings.access_token_minutes == 12
    assert settings.engines == ["big=http://gpu-1:8000", "big=http://gpu-2:8000"]
    assert settings.cors_origins == ["https://chat.example.com"]
    assert settings.config_file == config
    # The environment beats the file; arguments beat both.
    monkeypatch.setenv("CHATGATE_PORT", "8282")
    assert Settings().port == 8282
    assert Settings(port=8383).port == 8383
    monkeypatch.delenv("CHATGATE_CONFIG_FILE")
    assert Settings(config_file=config).access_token_minutes == 12


def test_yaml_config_file_must_exist_and_be_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("engines:\n  - not-a-spec\n")
    monkeypatch.setenv("CHATGATE_CONFIG_FILE", str(bad))
    with pytest.raises(ValidationError, match="NAME=http"):
        Settings()


def test_csv_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CHATGATE_ENGINES", " small=http://127.0.0.1:8001/ , big=https://gpu:8000/v1#org/model,"
    )
    monkeypatch.setenv("CHATGATE_CORS_ORIGINS", "https://a.example.com,https://b.example.com")
    settings = Settings()
    assert settings.engines == ["small=http://127.0.0.1:8001/", "big=https://gpu:8000/v1#org/model"]
    assert settings.cors_origins == ["https://a.example.com", "https://b.example.com"]
    assert settings.attached_engines() == [
        ("small", "http://127.0.0.1:8001"),
        ("big", "https://gpu:8000/v1#org/model"),
    ]
    monkeypatch.setenv("CHATGATE_ENGINES", "")
    monkeypatch.setenv("CHATGATE_CORS_ORIGINS", " , ")
    settings = Settings()
    assert settings.engines == [] and settings.cors_origins == []
    # Lists given directly are kept as they are.
    assert Settings(cors_origins=["https://x.example"]).cors_origins == ["https://x.example"]


@pytest.mark.parametrize(
    "spec",
    ["no-equals-sign", "name=", "=http://host:1", "name=ftp://host", "name=host:8000", " = "],
)
def test_invalid_engine_specs_are_rejected(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="NAME=http"):
        parse_engine_spec(spec)
    with pytest.raises(ValidationError):
        Settings(engines=[spec])
    monkeypatch.setenv("CHATGATE_ENGINES", f"ok=http://h:1,{spec}")
    with pytest.raises(ValidationError):
        Settings()


def test_masked_hides_every_secret() -> None:
    settings = Settings(
        jwt_secret="jwt-" + "q" * 40,
        admin_password="admin-pass-123",
        database_url="postgresql+asyncpg://chat:db-pass-456@db.internal:5432/chatgate",
        redis_url="redis://:redis-pass-789@cache:6379/0",
        engines=["big=http://engine-user:engine-pass-000@gpu:8000/v1"],
    )
    masked = settings.masked()
    dumped = json.dumps(masked, default=str)
    for secret in ("q" * 40, "admin-pass-123", "db-pass-456", "redis-pass-789", "engine-pass-000"):
        assert secret not in dumped
    assert masked["jwt_secret"] == "********" and masked["admin_password"] == "********"
    assert masked["database_url"] == "postgresql+asyncpg://chat:****@db.internal:5432/chatgate"
    assert masked["redis_url"] == "redis://:****@cache:6379/0"
    assert masked["engines"] == ["big=http://engine-user:****@gpu:8000/v1"]
    # Everything else is shown as configured.
    assert masked["port"] == 8080 and masked["jwt_issuer"] == "chatgate"
    unset = Settings().masked()
    assert unset["jwt_secret"] is None and unset["admin_password"] is None


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:****@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:****@h/db"),
        ("postgresql://h/db?user=u&password=pw&sslmode=require",
         "postgresql://h/db?user=u&password=****&sslmode=require"),
        ("postgresql://h/db?sslmode=require", "postgresql://h/db?sslmode=require"),
        ("sqlite+aiosqlite:////data/a@b/chatgate.db", "sqlite+aiosqlite:////data/a@b/chatgate.db"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_binds_loopback(host: str, loopback: bool) -> None:
    assert Settings(host=host).binds_loopback() is loopback


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "no JWT secret"),
        ("change-me", "placeholder"),
        ("  CHANGE-ME ", "placeholder"),
        ("changeme", "placeholder"),
        ("secret", "placeholder"),
        ("x" * 31, "shorter than 32 bytes"),
        ("é" * 15, "shorter than 32 bytes"),  # 30 bytes
        ("x" * 32, None),
        ("é" * 16, None),  # 32 bytes
    ],
)
def test_secret_problem(secret: str | None, problem: str | None) -> None:
    found = Settings(jwt_secret=secret).secret_problem()
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
