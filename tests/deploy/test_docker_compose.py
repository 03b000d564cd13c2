"""deploy/docker-compose.yml (+ the CPU override and .env.example), checked statically.

`docker-compose config` (Debian's docker-compose, no daemon needed) renders both stacks;
the compose-spec JSON schema vendored in check-jsonschema validates the files offline; the
structure test asserts what the deployment promises.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tooling import DEPLOY, require_tool

COMPOSE = DEPLOY / "docker-compose.yml"
CPU = DEPLOY / "docker-compose.cpu.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRETS = {
    "POSTGRES_PASSWORD": "pw",
    "CHATGATE_JWT_SECRET": "j" * 48,
    "GRAFANA_ADMIN_PASSWORD": "g",
    "MINIO_ROOT_PASSWORD": "minio-secret",
}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def env_file(tmp_path: Path) -> Path:
    """.env.example with the required secrets filled in."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={SECRETS[key]}" if key in SECRETS else line)
    path = tmp_path / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose_config(tmp_path: Path, *files: Path, env: Path | None = None) -> str:
    tool = require_tool("docker-compose", "Debian: apt-get install -y docker-compose")
    args = [tool, "--project-directory", str(DEPLOY)]
    if env is not None:
        args += ["--env-file", str(env)]
    for file in files:
        args += ["-f", str(file)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_docker_compose_config_renders_the_gpu_stack(tmp_path: Path) -> None:
    rendered = yaml.safe_load(compose_config(tmp_path, COMPOSE, env=env_file(tmp_path)))
    gateway = rendered["services"]["gateway"]
    assert gateway["environment"]["CHATGATE_DATABASE_URL"] == (
        "postgresql+asyncpg://chatgate:pw@postgres:5432/chatgate"
    )
    assert gateway["environment"]["CHATGATE_ENGINES"] == (
        "deepseek-r1-distill-qwen-14b=http://vllm:8000"
    )
    vllm = rendered["services"]["vllm"]
    assert "--tensor-parallel-size=2" in vllm["command"]
    assert "--gpu-memory-utilization=0.55" in vllm["command"]


def test_docker_compose_config_renders_the_cpu_override(tmp_path: Path) -> None:
    rendered = yaml.safe_load(compose_config(tmp_path, COMPOSE, CPU, env=env_file(tmp_path)))
    gateway = rendered["services"]["gateway"]
    assert "--no-embedded" not in gateway["command"]
    assert gateway["environment"]["CHATGATE_EMBEDDED_ENGINE"] == "true"
    assert gateway["build"]["args"]["CHATGATE_EMBEDDED"] == "1"
    assert rendered["services"]["vllm"]["profiles"] == ["gpu"]  # never started
    assert "vllm" not in gateway.get("depends_on", {})


def test_missing_secrets_refuse_to_render(tmp_path: Path) -> None:
    """Empty secrets in .env.example: compose stops instead of starting without them."""
    tool = require_tool("docker-compose", "Debian: apt-get install -y docker-compose")
    result = subprocess.run(
        [tool, "--project-directory", str(DEPLOY), "--env-file", str(ENV_EXAMPLE),
         "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "deploy/.env" in result.stderr


@pytest.mark.parametrize("path", [COMPOSE, CPU], ids=lambda p: p.name)
def test_compose_spec_schema(path: Path) -> None:
    tool = require_tool("check-jsonschema", "pip install check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_structure() -> None:
    services = load(COMPOSE)["services"]
    assert {"vllm", "gateway", "postgres", "redis", "nginx"} <= set(services)
    monitoring = {"prometheus", "grafana", "loki", "alloy"}
    mlflow = {"mlflow", "mlflow-db-init", "minio", "minio-init"}
    for name in monitoring:
        assert services[name]["profiles"] == ["monitoring"]
    for name in mlflow:
        assert services[name]["profiles"] == ["mlflow"]
    for name in set(services) - monitoring - mlflow:
        assert "profiles" not in services[name], name

    vllm = services["vllm"]
    assert re.fullmatch(r"vllm/vllm-openai:\$\{VLLM_IMAGE_TAG:-v\d+\.\d+\.\d+\}", vllm["image"])
    devices = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["driver"] == "nvidia" and devices["capabilities"] == ["gpu"]
    args = " ".join(vllm["command"])
    for flag in ("--tensor-parallel-size", "--gpu-memory-utilization", "--max-model-len",
                 "--dtype"):
        assert f"{flag}=${{VLLM_" in args, flag
    assert "DeepSeek-R1-Distill-Qwen-14B" in args

    gateway = services["gateway"]
    env = gateway["environment"]
    assert env["CHATGATE_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["CHATGATE_REDIS_URL"].startswith("redis://redis:6379")
    assert "${CHATGATE_JWT_SECRET:?" in env["CHATGATE_JWT_SECRET"]
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "healthcheck" in gateway and "/health" in " ".join(gateway["healthcheck"]["test"])
    assert "ports" not in gateway, "only nginx is published"

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert services["redis"]["image"].startswith("redis:7")
    assert any(v.startswith("./nginx/nginx.conf:") for v in services["nginx"]["volumes"])
    for service in services.values():
        image = service.get("image", "")
        assert not image.endswith(":latest") or image.startswith("${CHATGATE_IMAGE"), image


def test_monitoring_mounts_exist() -> None:
    """Every ./monitoring/..., ./mlflow/... or ./nginx/... bind mount points at a file in the
    repository."""
    services = load(COMPOSE)["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./monitoring", "./mlflow", "./nginx/nginx.conf")):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "./monitoring/prometheus:/etc/prometheus" in prometheus
    assert "chatgate_metrics_token" in services["prometheus"]["secrets"]


def test_env_example_covers_every_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text() + CPU.read_text()))
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    optional = {"CHATGATE_IMAGE_CPU", "CHATGATE_EMBEDDED_THREADS", "GRAFANA_ADMIN_USER"}
    assert used - documented - optional == set()
    for key in SECRETS:
        assert f"{key}=\n" in ENV_EXAMPLE.read_text(), f"{key} must ship empty"
