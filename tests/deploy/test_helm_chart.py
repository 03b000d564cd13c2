"""deploy/helm/chatgate: rendered offline for every values file in ci/, then validated.

The renderer is helm-python-sdk (the `dev` extra): Helm's own Go engine (`helm template`,
`helm lint`, values.schema.json) loaded through ctypes from the wheel, so no helm binary, no
download and no cluster. Each render is kubernetes-validate'd (--strict) and scanned by checkov
like the plain manifests were, and the tests assert what the deployment promises.
"""

from __future__ import annotations

import importlib.util
import subprocess
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.tooling import DEPLOY, missing, require_tool

HELM = DEPLOY / "helm"
CHART = HELM / "chatgate"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
SSE_READ_TIMEOUT = 600  # seconds a stream may stay quiet (reasoning models think for minutes)

pytestmark = pytest.mark.timeout(120)


@cache
def _renderer() -> ModuleType | None:
    try:
        import helm_python  # noqa: F401
    except (ImportError, OSError):
        return None
    spec = importlib.util.spec_from_file_location("render_k8s", HELM / "render_k8s.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def renderer() -> ModuleType:
    module = _renderer()
    if module is None:
        missing("helm-python-sdk is not installed (pip install -e '.[dev]')")
    return module  # type: ignore[return-value]


def values_of(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    return data or {}


@cache
def _render(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(renderer().documents(renderer().render_chart(values_of(name))))


def render(name: str) -> list[dict[str, Any]]:
    return list(_render(name))


def render_values(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = renderer().documents(renderer().render_chart(values))
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {f"{d['kind']}/{d['metadata']['name']}" for d in docs}


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(docs, "Deployment", "chatgate-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every ci/ render as its own file, for the external validators (one run each)."""
    out = tmp_path_factory.mktemp("helm")
    for name in VALUE_SETS:
        (out / name).mkdir()
        body = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in render(name))
        (out / name / "manifests.yaml").write_text(body)
    return out


def test_ci_values_cover_the_promised_setups() -> None:
    assert set(VALUE_SETS) >= {
        "default", "external-datastores", "cpu-only", "ingress-monitoring-hpa",
    }


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name: str) -> None:
    import helm_python

    renderer()
    report = helm_python.lint(CHART, values_of(name), strict=True, namespace="chatgate")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_kubernetes_validate_strict(rendered_dir: Path) -> None:
    tool = require_tool("kubernetes-validate", "pip install kubernetes-validate")
    files = sorted(map(str, rendered_dir.glob("*/manifests.yaml")))
    assert len(files) == len(VALUE_SETS)
    result = subprocess.run([tool, "--strict", "--quiet", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The only schema it lacks is the Prometheus operator's CRD (checked below by hand).
    for line in (result.stdout + result.stderr).splitlines():
        assert "ServiceMonitor" in line or not line.strip(), line


def test_checkov_kubernetes(rendered_dir: Path) -> None:
    """Every failing check is fixed or skipped in the template with a justification."""
    tool = require_tool("checkov", "make .venv-tools/.installed")
    result = subprocess.run(
        [tool, "-d", str(rendered_dir), "--framework", "kubernetes", "--compact", "--quiet",
         "--skip-download"],
        capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in VALUE_SETS:
        for doc in render(name):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert check.startswith("CKV") and len(reason) > 10, value


@pytest.mark.parametrize("name", VALUE_SETS)
def test_gateway_deployment(name: str) -> None:
    values = values_of(name)
    docs = render(name)
    deployment = find(docs, "Deployment", "chatgate-gateway")
    pod = deployment["spec"]["template"]["spec"]
    container = gateway_container(docs)
    config = find(docs, "ConfigMap", "chatgate-config")["data"]
    env = env_of(container)

    # replicas: the HPA owns them when it is on; a fleet always has Redis
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    replicas = hpa[0]["spec"]["minReplicas"] if hpa else deployment["spec"]["replicas"]
    assert ("replicas" in deployment["spec"]) == (not hpa)
    if replicas > 1 or hpa:
        assert "CHATGATE_REDIS_URL" in env
    if name != "cpu-only":
        assert replicas >= 2

    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"

    # graceful shutdown: preStop sleep, then the gateway's drain, inside the grace period
    grace = values.get("gateway", {}).get("shutdownGraceSeconds", 30)
    assert config["CHATGATE_SHUTDOWN_GRACE_SECONDS"] == str(grace)
    sleep = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "sleep(" in sleep
    slept = int(sleep.split("sleep(")[1].split(")")[0])
    assert slept > 0
    assert pod["terminationGracePeriodSeconds"] >= grace + slept + 10
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    assert {"requests", "limits"} <= set(container["resources"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/var/lib/chatgate", "/tmp"}

    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    secret = values.get("secrets", {}).get("existingSecret") or "chatgate-secrets"
    assert sources == {"chatgate-config", secret}
    assert "CHATGATE_DATABASE_URL" in env

    service = find(docs, "Service", "chatgate-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_grace_period_follows_shutdown_grace() -> None:
    for grace in (5, 30, 120):
        docs = render_values({"gateway": {"shutdownGraceSeconds": grace}})
        pod = find(docs, "Deployment", "chatgate-gateway")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace + 10
        config = find(docs, "ConfigMap", "chatgate-config")["data"]
        assert config["CHATGATE_SHUTDOWN_GRACE_SECONDS"] == str(grace)


def test_default_is_a_fleet_with_bundled_datastores_and_vllm() -> None:
    docs = render("default")
    names = kinds(docs)
    assert {
        "StatefulSet/chatgate-postgresql", "StatefulSet/chatgate-redis",
        "Service/chatgate-postgresql", "Service/chatgate-redis",
        "Deployment/chatgate-vllm", "Service/chatgate-vllm",
        "PersistentVolumeClaim/chatgate-vllm-model-cache",
        "PodDisruptionBudget/chatgate-gateway", "Secret/chatgate-secrets",
        "Secret/chatgate-postgresql",
    } <= names
    assert not any(n.startswith(("Ingress/", "ServiceMonitor/", "HorizontalPodAutoscaler/"))
                   for n in names)
    env = env_of(gateway_container(docs))
    assert env["CHATGATE_REDIS_URL"]["value"] == "redis://chatgate-redis:6379/0"
    url = env["CHATGATE_DATABASE_URL"]["value"]
    assert url == "postgresql+asyncpg://chatgate:$(POSTGRES_PASSWORD)@chatgate-postgresql:5432/chatgate"
    # $(VAR) expands only from variables defined before it
    assert list(env).index("POSTGRES_PASSWORD") < list(env).index("CHATGATE_DATABASE_URL")
    config = find(docs, "ConfigMap", "chatgate-config")["data"]
    assert config["CHATGATE_ENGINES"] == "deepseek-r1-distill-qwen-14b=http://chatgate-vllm:8000"
    assert config["CHATGATE_EMBEDDED_ENGINE"] == "false"
    assert "--no-embedded" in gateway_container(docs)["args"]

    pdb = find(docs, "PodDisruptionBudget", "chatgate-gateway")["spec"]
    assert pdb["minAvailable"] == 1

    # the placeholders the gateway refuses to start with
    from chatgate.settings import PLACEHOLDER_SECRETS

    secret = find(docs, "Secret", "chatgate-secrets")["stringData"]
    assert secret["CHATGATE_JWT_SECRET"] in PLACEHOLDER_SECRETS

    for name in ("chatgate-postgresql", "chatgate-redis"):
        pod = find(docs, "StatefulSet", name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert {"readinessProbe", "livenessProbe"} <= set(container)
        assert "POSTGRES_PASSWORD" not in env_of(container)  # a mounted file, not the env

    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {
        "chatgate-gateway", "chatgate-vllm", "chatgate-postgresql", "chatgate-redis",
    }
    gateway_pods = {"matchLabels": find(docs, "Deployment", "chatgate-gateway")["spec"]
                    ["selector"]["matchLabels"]}
    for name in ("chatgate-postgresql", "chatgate-redis"):
        assert policies[name]["ingress"][0]["from"] == [{"podSelector": gateway_pods}]


def test_vllm_deployment() -> None:
    docs = render("default")
    deployment = find(docs, "Deployment", "chatgate-vllm")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("vllm/vllm-openai:v")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert "--tensor-parallel-size=2" in container["args"]
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"chatgate-vllm-model-cache"}
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    service = find(docs, "Service", "chatgate-vllm")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_external_datastores() -> None:
    docs = render("external-datastores")
    names = kinds(docs)
    assert not any(n.startswith("StatefulSet/") for n in names)
    assert "Secret/chatgate-secrets" not in names  # the operator's Secret is used
    env = env_of(gateway_container(docs))
    assert env["CHATGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "chatgate-datastores", "key": "CHATGATE_DATABASE_URL"}
    assert env["CHATGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "chatgate-redis", "key": "url"}
    stored = find(docs, "Secret", "chatgate-datastores")["stringData"]
    assert stored == {"CHATGATE_DATABASE_URL": values_of("external-datastores")
                      ["externalDatabase"]["url"]}
    container = gateway_container(docs)
    assert "@sha256:" in container["image"] and container["imagePullPolicy"] == "IfNotPresent"
    annotations = find(docs, "Deployment", "chatgate-gateway")["metadata"]["annotations"]
    assert not any(v.startswith("CKV_K8S_43") for v in annotations.values())


def test_cpu_only() -> None:
    docs = render("cpu-only")
    names = kinds(docs)
    assert not any("vllm" in n for n in names)
    assert not any(n.startswith("PodDisruptionBudget/") for n in names)  # one gateway
    container = gateway_container(docs)
    assert "--no-embedded" not in container["args"]
    assert "CHATGATE_REDIS_URL" not in env_of(container)
    config = find(docs, "ConfigMap", "chatgate-config")["data"]
    assert config["CHATGATE_EMBEDDED_ENGINE"] == "true"
    assert config["CHATGATE_ENGINES"] == "llama-remote=http://llama.example.internal:8080"
    assert config["CHATGATE_DEFAULT_MODEL"] == "smollm2-135m"
    for doc in docs:
        assert "nvidia.com/gpu" not in yaml.safe_dump(doc)


def test_ingress_servicemonitor_hpa() -> None:
    values = values_of("ingress-monitoring-hpa")
    docs = render("ingress-monitoring-hpa")

    ingress = find(docs, "Ingress", "chatgate")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    # A pod that drains refuses with 503 before doing anything: the ingress retries it on
    # the next pod, which needs the (small) request body buffered.
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert "http_503 non_idempotent" in annotations[
        "nginx.ingress.kubernetes.io/proxy-next-upstream"
    ]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= SSE_READ_TIMEOUT
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= SSE_READ_TIMEOUT
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == values["ingress"]["host"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "chatgate-gateway", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [values["ingress"]["host"]]

    monitor = find(docs, "ServiceMonitor", "chatgate-gateway")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "chatgate-secrets", "key": "CHATGATE_METRICS_TOKEN"},
    }
    service = find(docs, "Service", "chatgate-gateway")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert any(p["name"] == "http" for p in service["spec"]["ports"])

    hpa = find(docs, "HorizontalPodAutoscaler", "chatgate-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "chatgate-gateway"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "chatgate_active_streams"

    pdb = find(docs, "PodDisruptionBudget", "chatgate-gateway")["spec"]
    assert pdb["minAvailable"] == 2
    assert pdb["minAvailable"] < hpa["minReplicas"]

    for doc in docs:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get(
                "containers", []):
            assert "@sha256:" in container["image"], doc["metadata"]["name"]


def test_active_streams_metric_exists() -> None:
    from chatgate.observability.metrics import Metrics

    names = {m.name for m in Metrics().registry.collect()}  # type: ignore[no-untyped-call]
    assert "chatgate_active_streams" in names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"enabled": False}, "gateway": {"replicas": 3}}, "needs Redis"),
        ({"redis": {"enabled": False}, "gateway": {"replicas": 1,
          "autoscaling": {"enabled": True}}}, "needs Redis"),
        ({"postgresql": {"enabled": False}}, "a database is required"),
        ({"redis": {"enabled": True}, "externalRedis": {"url": "redis://r:6379/0"}},
         "choose one Redis"),
        ({"vllm": {"enabled": False}}, "no engine"),
    ],
)
def test_render_refuses_unsafe_combinations(values: dict[str, Any], message: str) -> None:
    import helm_python

    renderer()
    with pytest.raises(helm_python.HelmError, match=message):
        render_values(values)


def test_one_gateway_without_redis_renders() -> None:
    docs = render_values({"redis": {"enabled": False}, "gateway": {"replicas": 1}})
    assert "CHATGATE_REDIS_URL" not in env_of(gateway_container(docs))
    docs = render_values({"redis": {"enabled": False}, "gateway": {"replicas": 3},
                          "externalRedis": {"url": "rediss://cache.example:6380/0"}})
    assert "CHATGATE_REDIS_URL" in env_of(gateway_container(docs))


@pytest.mark.parametrize(
    "values",
    [
        {"gateway": {"replicas": "three"}},
        {"gateway": {"replicas": 0}},
        {"gateway": {"shutdownGraceSeconds": -1}},
        {"gateway": {"image": {"tag": "latest"}}},
        {"gateway": {"image": {"digest": "sha256:nope"}}},
        {"gateway": {"unknownKey": 1}},
        {"ingress": {"proxyReadTimeoutSeconds": 30}},
        {"externalDatabase": {"url": "mysql://db/chatgate"}},
        {"vllm": {"gpus": 0}},
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    import helm_python

    renderer()
    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)


def test_plain_manifests_are_a_fresh_render() -> None:
    """deploy/k8s/chatgate.yaml is generated from the chart: never edited by hand."""
    module = renderer()
    committed = (DEPLOY / "k8s" / "chatgate.yaml").read_text()
    assert committed == module.plain_manifests(), (
        "deploy/k8s/chatgate.yaml is stale: run .venv/bin/python deploy/helm/render_k8s.py"
    )


def test_journal_on_a_shared_claim() -> None:
    # Default: the journal lives in the pod's emptyDir (survives a container crash only).
    default = find(render("default"), "Deployment", "chatgate-gateway")["spec"]["template"]
    assert "journal" not in [v["name"] for v in default["spec"]["volumes"]]
    values = {**values_of("default")}
    values["gateway"] = {**values.get("gateway", {}), "journal": {"existingClaim": "cg-journal"}}
    docs = render_values(values)
    pod = find(docs, "Deployment", "chatgate-gateway")["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "journal")
    assert claim["persistentVolumeClaim"] == {"claimName": "cg-journal"}
    mounts = {m["name"]: m["mountPath"] for m in gateway_container(docs)["volumeMounts"]}
    assert mounts["journal"] == "/var/lib/chatgate/journal"
