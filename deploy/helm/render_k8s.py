#!/usr/bin/env python3
"""Render the Helm chart into the plain manifests deploy/k8s/chatgate.yaml.

    .venv/bin/python deploy/helm/render_k8s.py           # rewrite deploy/k8s/chatgate.yaml
    .venv/bin/python deploy/helm/render_k8s.py --check   # exit 1 if it is out of date

The chart (deploy/helm/chatgate) is the only source: the manifests are the chart rendered with
deploy/helm/k8s-values.yaml as release "chatgate" in namespace "chatgate", plus the Namespace.
Rendering uses helm-python-sdk (Helm's Go engine through ctypes), offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE / "chatgate"
VALUES = HERE / "k8s-values.yaml"
OUTPUT = HERE.parent / "k8s" / "chatgate.yaml"
RELEASE = NAMESPACE = "chatgate"

# Helm's install order, so that `kubectl apply -f` creates what others refer to first.
KIND_ORDER = [
    "Namespace", "NetworkPolicy", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
    "Deployment", "StatefulSet", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress",
    "ServiceMonitor",
]

HEADER = """\
# GENERATED from the Helm chart deploy/helm/chatgate with deploy/helm/k8s-values.yaml by
# deploy/helm/render_k8s.py: do not edit; change the chart or the values and run
#   .venv/bin/python deploy/helm/render_k8s.py
# (the test suite checks that this file equals a fresh render).
#
# Apply: create the Secret "chatgate-secrets" first (docs/operations.md, Kubernetes), then
#   kubectl apply -f deploy/k8s/chatgate.yaml
"""

NAMESPACE_DOC: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": NAMESPACE,
        "labels": {
            "app.kubernetes.io/part-of": "chatgate",
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        },
    },
}


def render_chart(
    values: dict[str, Any] | None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """The chart's rendered templates by path (schema-checked, as `helm template` does)."""
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=release, namespace=namespace, is_install=True)


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render, in install order (templates in name order)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(rendered[path]) if d]
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(docs, key=lambda d: rank.get(d["kind"], len(rank)))


def plain_manifests() -> str:
    values = yaml.safe_load(VALUES.read_text()) or {}
    docs = [NAMESPACE_DOC, *documents(render_chart(values))]
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)
    return HEADER + "---\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 if stale")
    args = parser.parse_args()
    fresh = plain_manifests()
    current = OUTPUT.read_text() if OUTPUT.exists() else ""
    if args.check:
        if current != fresh:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(fresh)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
