"""Static checks of the monitoring stack in deploy/monitoring (no network, no containers).

Every metric a dashboard or alert rule references must exist: chatgate_* names are read from
the gateway's own registry (chatgate.observability.metrics.Metrics), vllm:* names from the
allowlist below. Label matchers and by()/without() clauses must name labels those metrics
carry. promtool, when installed, validates the Prometheus config and the rules as well.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatgate.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_FILE = PROMETHEUS_DIR / "rules" / "chatgate-alerts.yml"
DASHBOARD_DIR = MONITORING / "grafana" / "dashboards"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = MONITORING / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
LOKI_CONFIG = MONITORING / "loki" / "loki-config.yml"
ALLOY_CONFIG = MONITORING / "alloy" / "config.alloy"

DASHBOARD_FILES = (
    "system-overview.json",
    "inference-metrics.json",
    "inference-detail.json",
    "logs.json",
    "training-metrics.json",
    "training-detail.json",
)

# vLLM's own metrics, as PrometheusStatLogger in vllm/v1/metrics/loggers.py registers them
# (name -> type, label names). Counters are exposed with a `_total` suffix
# (vllm:prompt_tokens -> vllm:prompt_tokens_total), as prometheus_client does.
#   - vllm:gpu_cache_usage_perc is the V0 / pre-0.10 name of vllm:kv_cache_usage_perc
#     (deprecated in 0.9, still exported next to the new name until 0.10); dashboards query
#     `new or old` to work with both.
#   - vllm:inter_token_latency_seconds (vLLM >= 0.11) supersedes
#     vllm:time_per_output_token_seconds (older); dashboards query `new or old`.
VLLM_LABELS = frozenset({"model_name", "engine"})
VLLM_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "vllm:num_requests_running": ("gauge", VLLM_LABELS),
    "vllm:num_requests_waiting": ("gauge", VLLM_LABELS),
    "vllm:kv_cache_usage_perc": ("gauge", VLLM_LABELS),
    "vllm:gpu_cache_usage_perc": ("gauge", VLLM_LABELS),
    "vllm:prompt_tokens": ("counter", VLLM_LABELS),
    "vllm:generation_tokens": ("counter", VLLM_LABELS),
    "vllm:num_preemptions": ("counter", VLLM_LABELS),
    "vllm:prefix_cache_queries": ("counter", VLLM_LABELS),
    "vllm:prefix_cache_hits": ("counter", VLLM_LABELS),
    "vllm:request_success": ("counter", VLLM_LABELS | {"finished_reason"}),
    "vllm:time_to_first_token_seconds": ("histogram", VLLM_LABELS),
    "vllm:time_per_output_token_seconds": ("histogram", VLLM_LABELS),
    "vllm:inter_token_latency_seconds": ("histogram", VLLM_LABELS),
    "vllm:e2e_request_latency_seconds": ("histogram", VLLM_LABELS),
    "vllm:request_queue_time_seconds": ("histogram", VLLM_LABELS),
}

# Labels Prometheus adds to every scraped series (the static `labels:` of prometheus.yml are
# added by target_labels() below).
SCRAPE_LABELS = frozenset({"job", "instance"})
# job_id: the fine-tuning trainer's log (one value per job, ever growing; structured metadata)
HIGH_CARDINALITY = frozenset({"request_id", "user_id", "job_id"})
PROMOTED_LOG_LABELS = frozenset({"level", "logger", "model", "status_code"})

METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:chatgate_[a-z0-9_]+|vllm:[a-z0-9_:]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER_LABEL_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GRAFANA_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_.]+)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
DURATION_RE = re.compile(r"^(\d+[smhdwy])+$")


# ---------------------------------------------------------------- the metric catalogue


def _series_names(name: str, kind: str) -> list[str]:
    """The series names a metric family is queried by."""
    if kind == "counter":
        return [name if name.endswith("_total") else f"{name}_total"]
    if kind == "histogram":
        return [name + suffix for suffix in HISTOGRAM_SUFFIXES]
    return [name]


def gateway_metrics() -> dict[str, frozenset[str]]:
    """Series name -> label names, for every series the gateway's registry exports."""
    registry = Metrics().registry
    catalogue: dict[str, frozenset[str]] = {}
    for collector in list(registry._collector_to_names):
        labels = frozenset(getattr(collector, "_labelnames", ()))
        describe = getattr(collector, "describe", None)
        families = describe() if describe is not None else collector.collect()
        for family in families:
            for series in _series_names(family.name, family.type):
                catalogue[series] = labels
    return catalogue


def vllm_metrics() -> dict[str, frozenset[str]]:
    catalogue: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in VLLM_METRICS.items():
        for series in _series_names(name, kind):
            catalogue[series] = labels
    return catalogue


@pytest.fixture(scope="module")
def catalogue() -> dict[str, frozenset[str]]:
    return {**gateway_metrics(), **vllm_metrics()}


def target_labels() -> frozenset[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    labels = set(SCRAPE_LABELS)
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            labels.update(static.get("labels", {}))
    return frozenset(labels)


# ---------------------------------------------------------------- expression checks


def _strip_strings(expr: str) -> str:
    """expr with the contents of quoted strings blanked (label values, line filters)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', expr)


def referenced_metrics(expr: str) -> set[str]:
    return set(METRIC_RE.findall(_strip_strings(expr)))


def base_name(series: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


def promql_problems(
    expr: str, catalogue: dict[str, frozenset[str]], extra_labels: frozenset[str]
) -> list[str]:
    """What is wrong with a PromQL expression: unknown metrics, unknown labels, brackets."""
    problems: list[str] = []
    code = _strip_strings(expr)
    if not code.strip():
        return ["empty expression"]
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in code:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                problems.append(f"unbalanced {char!r}")
                break
    if stack:
        problems.append("unclosed bracket")
    names = referenced_metrics(expr)
    unknown = sorted(n for n in names if n not in catalogue)
    problems += [f"unknown metric {n} (base name {base_name(n)})" for n in unknown]
    allowed = set(extra_labels) | {"le", "__name__"}
    for name in names - set(unknown):
        allowed |= catalogue[name]
    for match in re.finditer(r"((?:chatgate_|vllm:)[a-z0-9_:]+)\s*\{([^}]*)\}", code):
        metric, inner = match.groups()
        if metric not in catalogue:
            continue
        own = catalogue[metric] | extra_labels | ({"le"} if metric.endswith("_bucket") else set())
        for label in MATCHER_LABEL_RE.findall(inner):
            if label not in own:
                problems.append(f"{metric} has no label {label!r}")
    for group in GROUPING_RE.findall(code):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in allowed:
                problems.append(f"grouping by unknown label {label!r}")
    return problems


def stream_selector_labels(logql: str) -> set[str]:
    """Label names used in the stream selector(s) of a LogQL query."""
    labels: set[str] = set()
    for selector in re.findall(r"\{([^{}]*)\}", _strip_strings(logql)):
        labels.update(MATCHER_LABEL_RE.findall(selector))
    return labels


# ---------------------------------------------------------------- dashboards


def load_dashboard(name: str) -> dict[str, Any]:
    data = json.loads((DASHBOARD_DIR / name).read_text())
    assert isinstance(data, dict)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def provisioned_datasources() -> dict[str, str]:
    """uid -> type."""
    config = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in config["datasources"]}


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(datasource type, query) of each query variable."""
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query") or query.get("stream")
        yield var["datasource"]["type"], str(query or var.get("definition", ""))


def dashboard_problems(
    dashboard: dict[str, Any],
    catalogue: dict[str, frozenset[str]],
    extra_labels: frozenset[str],
    log_labels: frozenset[str],
) -> list[str]:
    """Everything wrong with one dashboard; [] when it is fine."""
    problems: list[str] = []
    datasources = provisioned_datasources()
    for key in ("uid", "title", "panels"):
        if not dashboard.get(key):
            problems.append(f"missing {key}")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    ids: set[int] = set()
    queries = 0
    for panel in all_panels(dashboard.get("panels", [])):
        where = f"panel {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id", -1))
        grid = panel.get("gridPos", {})
        if not {"h", "w", "x", "y"} <= grid.keys() or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: bad gridPos {grid}")
        if panel.get("type") in ("row", "text"):
            continue
        source = panel.get("datasource") or {}
        if source.get("uid") not in datasources:
            problems.append(f"{where}: datasource {source} is not provisioned")
            continue
        kind = datasources[source["uid"]]
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(f"{where}: duplicate refId")
        for target in targets:
            expr = target.get("expr", "")
            queries += 1
            if (target.get("datasource") or source).get("uid") != source["uid"]:
                problems.append(f"{where}: target datasource differs from the panel's")
            for match in GRAFANA_VAR_RE.finditer(expr):
                var = (match.group(1) or match.group(2)).split(".")[0]
                if not var.startswith("__") and var not in variables:
                    problems.append(f"{where}: undefined variable ${var}")
            if kind == "prometheus":
                found = promql_problems(expr, catalogue, extra_labels)
                problems += [f"{where}: {p}" for p in found]
            elif kind == "loki":
                used = stream_selector_labels(expr)
                if not used:
                    problems.append(f"{where}: LogQL without a stream selector: {expr}")
                if used & HIGH_CARDINALITY:
                    problems.append(f"{where}: selects on high-cardinality labels {used}")
                if used - log_labels:
                    problems.append(f"{where}: stream labels {used - log_labels} are not produced")
                if referenced_metrics(expr):
                    problems.append(f"{where}: PromQL metric in a LogQL query")
    for kind, query in variable_queries(dashboard):
        if kind == "prometheus":
            problems += [f"variable: {p}" for p in promql_problems(query, catalogue, extra_labels)]
    if not queries:
        problems.append("no queries")
    return problems


# ---------------------------------------------------------------- Alloy


def alloy_code() -> str:
    """config.alloy without comments."""
    text = ALLOY_CONFIG.read_text()
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def alloy_blocks(code: str, name: str) -> list[str]:
    """Bodies of the blocks called name (e.g. `stage.labels`)."""
    bodies = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(name)}\s*(?:\"[^\"]*\"\s*)?\{{", code):
        depth, start = 1, match.end()
        pos = start
        while depth and pos < len(code):
            depth += {"{": 1, "}": -1}.get(code[pos], 0)
            pos += 1
        bodies.append(code[start : pos - 1])
    return bodies


def alloy_map_keys(body: str, attribute: str) -> set[str]:
    """Keys of `attribute = { key = ..., "key" = ... }` inside body."""
    keys: set[str] = set()
    for match in re.finditer(rf"\b{attribute}\s*=\s*\[?\s*\{{([^{{}}]*)\}}", body):
        keys.update(re.findall(r"\"?([A-Za-z_][A-Za-z0-9_]*)\"?\s*=", match.group(1)))
    return keys


def alloy_label_names(code: str) -> set[str]:
    """Every Loki label the Alloy pipeline can attach to a stream."""
    labels: set[str] = set()
    for body in alloy_blocks(code, "stage.labels"):
        labels |= alloy_map_keys(body, "values")
    for body in alloy_blocks(code, "stage.static_labels"):
        labels |= alloy_map_keys(body, "values")
    for body in alloy_blocks(code, "local.file_match"):
        labels |= {k for k in alloy_map_keys(body, "path_targets") if not k.startswith("__")}
    for body in alloy_blocks(code, "loki.source.docker") + alloy_blocks(code, "loki.source.file"):
        labels |= alloy_map_keys(body, "labels")
    labels |= set(re.findall(r"\btarget_label\s*=\s*\"([A-Za-z_][A-Za-z0-9_]*)\"", code))
    if alloy_blocks(code, "loki.source.file"):
        labels.add("filename")  # loki.source.file labels each line with its file
    return labels


@pytest.fixture(scope="module")
def log_labels() -> frozenset[str]:
    return frozenset(alloy_label_names(alloy_code()))


# ================================================================= tests: the checkers


def test_catalogue_comes_from_the_gateway_registry(catalogue: dict[str, frozenset[str]]) -> None:
    assert catalogue["chatgate_requests_total"] == {"route", "model", "status"}
    assert "chatgate_request_duration_seconds_bucket" in catalogue
    assert "chatgate_active_streams" in catalogue
    assert "chatgate_requests" not in catalogue  # counters only with _total
    assert "chatgate_request_duration_seconds" not in catalogue  # histograms only with suffixes
    assert "vllm:generation_tokens_total" in catalogue


def test_the_extractor_rejects_unknown_metrics_and_labels(
    catalogue: dict[str, frozenset[str]],
) -> None:
    extra = target_labels()
    good = (
        "histogram_quantile(0.95, sum by (le, model) "
        '(rate(chatgate_time_to_first_token_seconds_bucket{model=~"$model"}[5m])))'
    )
    assert promql_problems(good, catalogue, extra) == []
    assert referenced_metrics(good) == {"chatgate_time_to_first_token_seconds_bucket"}
    for bad, why in (
        ("rate(chatgate_bogus_total[5m])", "unknown metric chatgate_bogus_total"),
        ("rate(chatgate_requests[5m])", "unknown metric chatgate_requests"),
        ("chatgate_active_streams_bucket", "unknown metric chatgate_active_streams_bucket"),
        ("vllm:made_up_metric", "unknown metric vllm:made_up_metric"),
        ('chatgate_requests_total{code="500"}', "has no label 'code'"),
        ("sum by (user_id) (chatgate_tokens_total)", "unknown label 'user_id'"),
        ("sum(rate(chatgate_requests_total[5m])", "unclosed bracket"),
    ):
        problems = promql_problems(bad, catalogue, extra)
        assert any(why in p for p in problems), (bad, problems)
    # label values and line filters never count as metric names
    assert referenced_metrics('up{job="chatgate_gateway"}') == set()


def test_a_dashboard_with_an_unknown_metric_fails(
    catalogue: dict[str, frozenset[str]], log_labels: frozenset[str]
) -> None:
    board = load_dashboard("inference-metrics.json")
    assert dashboard_problems(board, catalogue, target_labels(), log_labels) == []
    panel = next(p for p in all_panels(board["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = "sum(rate(chatgate_no_such_metric_total[5m]))"
    problems = dashboard_problems(board, catalogue, target_labels(), log_labels)
    assert any("chatgate_no_such_metric_total" in p for p in problems), problems


def test_a_log_query_on_request_id_fails(
    catalogue: dict[str, frozenset[str]], log_labels: frozenset[str]
) -> None:
    board = load_dashboard("logs.json")
    panel = next(p for p in all_panels(board["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = '{job="chatgate", request_id="abc"}'
    problems = dashboard_problems(board, catalogue, target_labels(), log_labels)
    assert any("high-cardinality" in p for p in problems), problems


def test_alloy_label_extractor_sees_promoted_labels() -> None:
    code = 'stage.labels {\n values = {\n  level = "",\n  request_id = "",\n }\n}\n'
    assert alloy_label_names(code) == {"level", "request_id"}


# ================================================================= tests: Prometheus


def test_every_yaml_file_parses() -> None:
    files = sorted(MONITORING.rglob("*.yml")) + sorted(MONITORING.rglob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_prometheus_scrapes_the_gateway_with_its_token_and_the_engines() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["chatgate"]
    assert gateway.get("metrics_path", "/metrics") == "/metrics"
    assert gateway["authorization"]["type"] == "Bearer"
    assert gateway["authorization"]["credentials_file"]
    assert "credentials" not in gateway["authorization"]  # never a token in the file
    assert gateway["static_configs"][0]["targets"]
    vllm = jobs["vllm"]
    assert vllm.get("metrics_path", "/metrics") == "/metrics"
    assert vllm["static_configs"][0]["targets"]
    assert "kubernetes_sd_configs" in PROMETHEUS_CONFIG.read_text()  # the commented example
    rule_globs = [PROMETHEUS_DIR / pattern for pattern in config["rule_files"]]
    assert any(RULES_FILE.match(str(glob)) for glob in rule_globs), config["rule_files"]
    for duration in (config["global"]["scrape_interval"], config["global"]["evaluation_interval"]):
        assert DURATION_RE.match(duration)


def load_rules() -> list[dict[str, Any]]:
    config = yaml.safe_load(RULES_FILE.read_text())
    assert config["groups"]
    rules: list[dict[str, Any]] = []
    for group in config["groups"]:
        assert group["name"] and group["rules"], group
        rules += group["rules"]
    return rules


def test_alert_rules_are_complete(catalogue: dict[str, frozenset[str]]) -> None:
    rules = load_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    extra = target_labels()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert DURATION_RE.match(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        assert promql_problems(rule["expr"], catalogue, extra) == [], rule["alert"]
        # {{ $labels.x }} in annotations must name a label of the metrics involved
        allowed = set(extra)
        for metric in referenced_metrics(rule["expr"]):
            allowed |= catalogue[metric]
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text):
                assert label in allowed, (rule["alert"], label)


def test_alert_rules_cover_the_failure_modes() -> None:
    exprs = [rule["expr"] for rule in load_rules()]

    def alerts_on(metric: str) -> list[str]:
        return [e for e in exprs if metric in referenced_metrics(e)]

    assert alerts_on("chatgate_request_duration_seconds_bucket"), "high latency"
    assert any('"error' in e for e in alerts_on("chatgate_requests_total")), "error rate"
    assert alerts_on("chatgate_engine_up"), "engine down"
    assert alerts_on("chatgate_gpu_memory_used_bytes"), "GPU memory high"
    assert alerts_on("chatgate_ratelimit_fallback"), "rate-limit fallback"
    ttft = alerts_on("chatgate_time_to_first_token_seconds_bucket")
    assert any("histogram_quantile(0.5" in e and "1.5" in e for e in ttft), "TTFT p50 KPI"


PROMTOOL = shutil.which("promtool")


def run_promtool(*args: str) -> None:
    assert PROMTOOL
    result = subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_config_and_rules(tmp_path: Path) -> None:
    """Structural checks above always run; promtool adds semantic checks where installed."""
    load_rules()
    if PROMTOOL is None:
        return  # `apt-get install prometheus` provides promtool; CI images without it skip this
    run_promtool("check", "rules", str(RULES_FILE))
    # The credentials file lives in a container secret: point it at a temporary file.
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    token = tmp_path / "token"
    token.write_text("test-token\n")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    (copy / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_promtool("check", "config", str(copy / "prometheus.yml"))


# ================================================================= tests: Grafana


def test_datasources_are_provisioned_with_fixed_uids() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"].endswith(":9090")
    assert by_uid["loki"]["type"] == "loki"
    assert by_uid["loki"]["url"].endswith(":3100")
    assert [ds["uid"] for ds in config["datasources"] if ds.get("isDefault")] == ["prometheus"]


def test_dashboard_provider_loads_the_dashboard_folder() -> None:
    config = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    shipped = {p.name for p in DASHBOARD_DIR.glob("*.json")}
    assert shipped == set(DASHBOARD_FILES)


def test_dashboard_uids_are_unique() -> None:
    uids = [load_dashboard(name)["uid"] for name in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids)
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_valid(
    name: str, catalogue: dict[str, frozenset[str]], log_labels: frozenset[str]
) -> None:
    dashboard = load_dashboard(name)
    assert "chatgate" in dashboard["tags"]
    assert dashboard_problems(dashboard, catalogue, target_labels(), log_labels) == []


def _exprs(dashboard: dict[str, Any], kind: str) -> list[str]:
    return [
        target["expr"]
        for panel in all_panels(dashboard["panels"])
        if (panel.get("datasource") or {}).get("type") == kind
        for target in panel.get("targets", [])
    ]


def test_metric_dashboards_show_the_core_metrics() -> None:
    used: set[str] = set()
    for name in ("system-overview.json", "inference-metrics.json", "inference-detail.json"):
        for expr in _exprs(load_dashboard(name), "prometheus"):
            used |= {base_name(m) for m in referenced_metrics(expr)}
    for metric in (
        "chatgate_requests_total",
        "chatgate_request_duration_seconds",
        "chatgate_time_to_first_token_seconds",
        "chatgate_inter_token_latency_seconds",
        "chatgate_tokens_total",
        "chatgate_active_streams",
        "chatgate_engine_up",
        "chatgate_gpu_memory_used_bytes",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ):
        assert metric in used, metric


def test_inference_detail_is_templated_by_model() -> None:
    dashboard = load_dashboard("inference-detail.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    model = variables["model"]
    assert model["type"] == "query" and model["datasource"]["uid"] == "prometheus"
    exprs = _exprs(dashboard, "prometheus")
    assert sum("$model" in e for e in exprs) >= 10


def test_training_dashboards_show_every_training_metric() -> None:
    """Each chatgate_training_* series the gateway exports has a panel (docs/mlops.md)."""
    exported = {base_name(s) for s in gateway_metrics() if s.startswith("chatgate_training_")}
    assert len(exported) >= 10
    for name in ("training-metrics.json", "training-detail.json"):
        board = load_dashboard(name)
        assert "training" in board["tags"]
        used = {base_name(m) for e in _exprs(board, "prometheus") for m in referenced_metrics(e)}
        assert exported - used == set(), name


def test_training_detail_is_templated_by_model_and_gateway() -> None:
    dashboard = load_dashboard("training-detail.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"model", "instance"} <= variables.keys()
    assert "chatgate_training_" in variables["model"]["definition"]
    assert variables["model"]["multi"] is False  # one job at a time
    exprs = _exprs(dashboard, "prometheus")
    titles = {p.get("title") for p in all_panels(dashboard["panels"])}
    assert {"Loss curve", "Learning rate", "Throughput", "Progress"} <= titles
    per_job = [e for e in exprs if "chatgate_training_jobs" not in e.split(" and ")[0]]
    assert all('model="$model"' in e and "$instance" in e for e in per_job), per_job


def test_training_metrics_link_each_job_to_its_detail() -> None:
    dashboard = load_dashboard("training-metrics.json")
    detail = load_dashboard("training-detail.json")
    links = [
        link["url"]
        for panel in all_panels(dashboard["panels"])
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert len(links) >= 5
    for url in links:
        assert url.startswith(f"/d/{detail['uid']}/")
        assert "var-model=${__field.labels.model}" in url and "var-instance=" in url


def test_logs_dashboard_filters_by_level_request_id_and_model() -> None:
    dashboard = load_dashboard("logs.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"level", "model", "request_id"} <= variables.keys()
    assert variables["request_id"]["type"] == "textbox"
    exprs = _exprs(dashboard, "loki")
    assert exprs
    assert any("$level" in e and "$model" in e and "$request_id" in e for e in exprs)
    assert any(p["type"] == "logs" for p in all_panels(dashboard["panels"]))


# ================================================================= tests: Loki and Alloy


def test_loki_config() -> None:
    config = yaml.safe_load(LOKI_CONFIG.read_text())
    assert config["server"]["http_listen_port"] == 3100
    (schema,) = config["schema_config"]["configs"]
    assert schema["store"] == "tsdb" and schema["schema"] == "v13"  # structured metadata
    assert config["limits_config"]["allow_structured_metadata"] is True
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"]


def test_alloy_pipeline_components() -> None:
    code = alloy_code()
    for component in (
        "local.file_match",
        "loki.source.file",
        "discovery.docker",
        "loki.source.docker",
        "loki.process",
        "stage.json",
        "stage.labels",
        "loki.write",
    ):
        assert alloy_blocks(code, component), component
    assert "/var/lib/chatgate/logs/*.log" in code
    assert code.count("{") == code.count("}")
    # every reference points at a declared component
    declared = set(re.findall(r"^\s*([a-z_]+(?:\.[a-z_]+)+)\s+\"([^\"]+)\"\s*\{", code, re.M))
    references = re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+)\.(receiver|targets|output|rules)\b", code)
    assert references
    for path, _export in references:
        component, _, label = path.rpartition(".")
        assert (component, label) in declared, path


def test_alloy_promotes_only_low_cardinality_labels(log_labels: frozenset[str]) -> None:
    code = alloy_code()
    promoted: set[str] = set()
    for body in alloy_blocks(code, "stage.labels"):
        promoted |= alloy_map_keys(body, "values")
    assert promoted == PROMOTED_LOG_LABELS
    assert not log_labels & HIGH_CARDINALITY
    parsed: set[str] = set()
    for body in alloy_blocks(code, "stage.json"):
        parsed |= alloy_map_keys(body, "expressions")
    assert PROMOTED_LOG_LABELS <= parsed
    metadata: set[str] = set()
    for body in alloy_blocks(code, "stage.structured_metadata"):
        metadata |= alloy_map_keys(body, "values")
    assert metadata == HIGH_CARDINALITY  # searchable without being labels
