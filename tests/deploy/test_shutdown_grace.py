"""One shutdown grace period everywhere: the gateway exits within
``CHATGATE_SHUTDOWN_GRACE_SECONDS`` of SIGTERM (shutdown.py), so each orchestrator must
wait at least that long, plus a margin, before it sends SIGKILL: docker compose's
``stop_grace_period``, and in Kubernetes ``terminationGracePeriodSeconds``, which also
covers the preStop sleep that runs before SIGTERM. Read from the files as shipped:
deploy/docker-compose.yml, the chart's values and the rendered deploy/k8s/chatgate.yaml.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from chatgate.settings import Settings
from chatgate.shutdown import ShutdownBudget
from tests.deploy.tooling import DEPLOY

COMPOSE = DEPLOY / "docker-compose.yml"
MANIFESTS = DEPLOY / "k8s" / "chatgate.yaml"
CHART_VALUES = DEPLOY / "helm" / "chatgate" / "values.yaml"
K8S_VALUES = DEPLOY / "helm" / "k8s-values.yaml"
# Beyond the gateway's own bound: the interpreter's exit, a stuck write, a slow node.
MARGIN_SECONDS = 5
ENV = "CHATGATE_SHUTDOWN_GRACE_SECONDS"
DEFAULT_GRACE = Settings.model_fields["shutdown_grace_seconds"].default


def load(path: Any) -> Any:
    return yaml.safe_load(path.read_text())


def seconds(duration: str) -> float:
    """A compose duration: ``40s``, ``1m30s``, ``2m``."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"unexpected duration {duration!r}"
    return int(parts[1] or 0) * 60 + float(parts[2] or 0)


def gateway_manifests() -> tuple[dict[str, str], dict[str, Any]]:
    """The rendered ConfigMap's data and the gateway Deployment's pod spec."""
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "data" in d and ENV in d["data"])
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "chatgate-gateway"
    )
    return config["data"], deployment["spec"]["template"]["spec"]


def prestop_sleep(pod: dict[str, Any]) -> float:
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    found = re.search(r"sleep\((\d+(?:\.\d+)?)\)", command)
    assert found, command
    return float(found[1])


def test_compose_waits_for_the_whole_shutdown() -> None:
    gateway = load(COMPOSE)["services"]["gateway"]
    grace = float(gateway["environment"][ENV])  # a literal: nothing can override one alone
    assert grace == DEFAULT_GRACE
    assert seconds(gateway["stop_grace_period"]) >= grace + MARGIN_SECONDS


def test_kubernetes_waits_for_the_prestop_sleep_and_the_whole_shutdown() -> None:
    config, pod = gateway_manifests()
    grace = float(config[ENV])
    assert grace == DEFAULT_GRACE
    slept = prestop_sleep(pod)
    assert slept > 0  # the pod leaves the Service endpoints before SIGTERM
    assert pod["terminationGracePeriodSeconds"] >= slept + grace + MARGIN_SECONDS


def test_the_chart_passes_its_value_and_sizes_the_grace_period_from_it() -> None:
    values = load(CHART_VALUES)["gateway"]
    overrides = (load(K8S_VALUES) or {}).get("gateway", {})
    merged = {**values, **overrides}
    config, pod = gateway_manifests()
    assert merged["shutdownGraceSeconds"] == DEFAULT_GRACE
    assert config[ENV] == str(merged["shutdownGraceSeconds"])
    assert prestop_sleep(pod) == merged["preStopSleepSeconds"]
    assert merged["terminationMarginSeconds"] >= MARGIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] == (
        merged["preStopSleepSeconds"]
        + merged["shutdownGraceSeconds"]
        + merged["terminationMarginSeconds"]
    )


def test_the_gateway_spends_less_than_its_grace() -> None:
    budget = ShutdownBudget(DEFAULT_GRACE)
    after_deadline = budget.settle + budget.server_seconds + budget.lifespan_seconds
    assert budget.deadline + after_deadline < DEFAULT_GRACE
