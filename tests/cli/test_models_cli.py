"""`chatgate models list|check` on fake hardware: verdicts, numbers, JSON, exit status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from chatgate.cli.main import app
from tests.fakes.nvml import FakeGpu, FakeNvml

SEED = "deepseek-r1-distill-qwen-14b"


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    """This machine's GPUs must not leak in: no NVML unless a test installs a fake."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def two_3090s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu(), FakeGpu()]).module())


def test_seed_on_two_24gib_gpus() -> None:
    result = invoke("models", "check", SEED, "--gpus", "2", "--gpu-memory", "24GiB")

    assert result.exit_code == 0, result.output
    assert "Verdict:  fits with TP=2" in result.output
    assert "fits in fp16 only with tensor-parallel-size 2" in result.output
    assert "weights 27.51 GiB + KV cache 1.50 GiB" in result.output
    assert "Suggested vLLM flags: --tensor-parallel-size 2 --gpu-memory-utilization 0.75" in (
        result.output
    )


def test_seed_on_one_24gib_gpu() -> None:
    result = invoke("models", "check", SEED, "--gpus", "1", "--gpu-memory", "24GiB")

    assert result.exit_code == 1, result.output
    assert "does not fit in fp16" in result.output
    assert "Would fit instead: deepseek-r1-distill-qwen-14b-awq" in result.output


def test_without_gpu_answers_cleanly() -> None:
    result = invoke("models", "check", SEED)

    assert result.exit_code == 0, result.output
    assert "Hardware: no GPU detected" in result.output
    assert "Verdict:  no GPU" in result.output
    assert "--gpus N --gpu-memory SIZE" in result.output


def test_detected_gpus_are_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    two_3090s(monkeypatch)

    result = invoke("models", "check", "deepseek-r1:14b", "--utilization", "0.9")

    assert result.exit_code == 0, result.output
    assert "Hardware: 2 x 24.00 GiB GPU (NVIDIA GeForce RTX 3090), detected" in result.output
    assert "fits with TP=2" in result.output


def test_gpu_memory_alone_means_one_gpu() -> None:
    result = invoke("models", "check", "qwen2.5-7b", "--gpu-memory", "24GB", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["hardware"]["gpus"] == 1
    assert report["hardware"]["gpu_memory_bytes"] == 24_000_000_000
    assert report["verdict"] == "fits" and report["tensor_parallel_size"] == 1
    assert report["suggested_args"][:2] == ["--tensor-parallel-size", "1"]


def test_json_of_a_model_that_does_not_fit() -> None:
    result = invoke("models", "check", SEED, "--gpus", "1", "--gpu-memory", "24GiB", "--json")

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["verdict"] == "does_not_fit"
    assert report["alternatives"][0] == "deepseek-r1-distill-qwen-14b-awq"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gpt-5"], "unknown model profile 'gpt-5'"),
        ([SEED, "--gpu-memory", "lots"], "not a size"),
        ([SEED, "--gpus", "2"], "--gpu-memory 24GiB"),
        (
            ["gemma-2-9b-it", "--gpus", "1", "--gpu-memory", "24G", "--max-model-len", "9000"],
            "9000",
        ),
        ([SEED, "--utilization", "1.5"], "--utilization"),
    ],
)
def test_usage_errors_exit_2(args: list[str], expected: str) -> None:
    result = invoke("models", "check", *args)

    assert result.exit_code == 2
    assert expected in result.output


def test_help_documents_the_exit_status() -> None:
    result = invoke("models", "check", "--help")

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit status: 0 when it can run" in text and "1 when it does not fit" in text


def test_list_shows_every_profile_with_its_verdict() -> None:
    result = invoke("models", "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "ENGINE"]
    smol = next(line for line in lines if line.startswith("smollm2-135m "))
    assert "llamacpp" in smol and "Q4_1" in smol and smol.endswith("CPU")
    seed = next(line for line in lines if line.startswith(SEED + " "))
    assert "14.77B" in seed and "fp16" in seed and seed.endswith("no GPU")
    assert "HERE: no GPU detected" in result.output


def test_list_json_on_detected_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    two_3090s(monkeypatch)

    result = invoke("models", "list", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["hardware"]["gpus"] == 2
    checks = {item["id"]: item["check"] for item in data["profiles"]}
    assert checks[SEED]["verdict"] == "fits_with_tp"
    assert checks["llama-3.1-8b-instruct"]["verdict"] == "fits"
    assert len(checks) >= 11


def test_admin_profiles_dir_from_settings(tmp_path: Path) -> None:
    admin = tmp_path / "profiles"
    admin.mkdir()
    (admin / "local.yaml").write_text(
        "id: local-model\nname: Local\nengine: vllm\npath: /models/local\nparams_b: 1\n"
        "num_layers: 16\nnum_kv_heads: 4\nhead_dim: 64\ncontext_length: 4096\n"
        "max_model_len: 4096\n"
    )
    env = {"CHATGATE_PROFILES_DIR": str(admin)}

    assert "local-model" in invoke("models", "list", env=env).output

    (admin / "broken.yaml").write_text("id: broken\n")
    result = invoke("models", "list", env=env)
    assert result.exit_code == 2
    assert str(admin / "broken.yaml") in result.output and "'name'" in result.output
