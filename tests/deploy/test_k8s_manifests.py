"""deploy/k8s/chatgate.yaml: the Helm chart rendered for `kubectl apply` without Helm.

The file is generated (deploy/helm/render_k8s.py); test_helm_chart.py checks that it equals a
fresh render and tests the chart itself. Here: the committed file as users apply it.
"""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.deploy.tooling import DEPLOY, require_tool

MANIFESTS = DEPLOY / "k8s" / "chatgate.yaml"


def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]


def test_only_generated_manifests() -> None:
    assert sorted(p.name for p in MANIFESTS.parent.iterdir()) == ["chatgate.yaml"]
    assert MANIFESTS.read_text().startswith("# GENERATED from the Helm chart")


def test_kubernetes_validate_strict() -> None:
    tool = require_tool("kubernetes-validate", "pip install kubernetes-validate")
    result = subprocess.run(
        [tool, "--strict", "--quiet", str(MANIFESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_kubernetes() -> None:
    tool = require_tool("checkov", "make .venv-tools/.installed")
    result = subprocess.run(
        [tool, "-f", str(MANIFESTS), "--framework", "kubernetes", "--compact", "--quiet",
         "--skip-download"],
        capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_what_ci_and_the_docs_rely_on() -> None:
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs()}
    assert objects[("Namespace", "chatgate")]
    namespaced = [d for d in docs() if d["kind"] != "Namespace"]
    assert all(d["metadata"]["namespace"] == "chatgate" for d in namespaced)
    # CI rolls out with `kubectl -n chatgate set image deployment/chatgate-gateway gateway=…`
    pod = objects[("Deployment", "chatgate-gateway")]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["gateway"]
    # no Secret in the file: operators create chatgate-secrets first (docs/operations.md)
    assert not [d for d in docs() if d["kind"] == "Secret"]
    refs = yaml.safe_dump(namespaced)
    assert "name: chatgate-secrets" in refs and "key: POSTGRES_PASSWORD" in refs
    assert ("Ingress", "chatgate") in objects
    assert ("HorizontalPodAutoscaler", "chatgate-gateway") in objects
