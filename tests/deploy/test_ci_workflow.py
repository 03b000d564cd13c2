""".github/workflows/ci.yml: the GitHub workflow schema (vendored in check-jsonschema, offline)
and the jobs the deployment relies on."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.deploy.tooling import ROOT, require_tool

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def load() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def test_github_workflow_schema() -> None:
    tool = require_tool("check-jsonschema", "pip install check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_jobs() -> None:
    workflow = load()
    assert True in workflow or "on" in workflow  # YAML 1.1 reads the key `on` as True
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "image", "deploy"}
    steps = " ".join(str(step.get("run", "")) for step in jobs["test"]["steps"])
    assert "make test" in steps
    assert jobs["test"]["env"]["CI"] == "true"
    assert {"postgres", "redis"} <= set(jobs["test"]["services"])
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["file"] == "deploy/Dockerfile" and build["with"]["push"] is True
    assert jobs["image"]["needs"] == "test" and jobs["deploy"]["needs"] == "image"
    deploy = " ".join(str(step.get("run", "")) for step in jobs["deploy"]["steps"])
    assert "curl" in deploy and "/health" in deploy
    assert "rollout undo" in deploy
