"""Model profiles: which model an engine runs, with which flags, and the size figures
the hardware check needs (chatgate.engines.catalog.compat).

Profiles are YAML files, one per profile: the shipped ones in ``profiles/`` next to
this module, plus an admin directory (``Settings.profiles_dir``) whose profiles
override shipped ones with the same id.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatgate.engines.upstream.endpoint import Task, Timeouts

EngineKind = Literal["vllm", "llamacpp", "openai"]
Dtype = Literal["float16", "bfloat16", "float32"]
Pooling = Literal["mean", "cls", "last"]
# llama.cpp evaluates one embedding input in one micro-batch (llama-server's default size).
LLAMACPP_EMBEDDING_INPUT = 512
EngineArg = str | int | float | bool

DTYPE_BYTES: dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4}
# Typical bits per weight *including* scales and zero points, for the linear layers.
# AWQ/GPTQ 4-bit with group size 128 store an fp16 scale and a 4-bit zero per group
# (4 + 16/128 + 4/128 ~ 4.16; 4.25 leaves room for g64 checkpoints). GGUF figures are
# llama.cpp's block layouts (q4_1: 32 x 4-bit + fp16 scale + fp16 min = 5.0 bits).
# Whole checkpoints are larger: embeddings and lm_head usually stay fp16, so profiles
# of real quantized checkpoints set ``weight_bits`` from the files' actual size.
QUANT_BITS: dict[str, float] = {
    "awq": 4.25,
    "awq_marlin": 4.25,
    "gptq": 4.25,
    "gptq_marlin": 4.25,
    "bitsandbytes": 4.5,
    "fp8": 8.0,
    "int8": 8.0,
    "q4_0": 4.5,
    "q4_1": 5.0,
    "q5_0": 5.5,
    "q5_1": 6.0,
    "q8_0": 8.5,
    "q4_k_m": 4.85,
    "q5_k_m": 5.69,
    "q6_k": 6.56,
}
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
DIST_PREFIX = "dist:"
PROFILE_SUFFIXES = (".yaml", ".yml")
# engine_args that duplicate a profile field: both must agree, or the check and the
# engine would disagree about what runs.
MIRRORED_ARGS = {"max-model-len": "max_model_len", "dtype": "dtype", "quantization": "quantization"}


class ProfileError(ValueError):
    """A profile is invalid, missing, or cannot be resolved; the message says which."""


class ProfileTimeouts(BaseModel):
    """Per-engine overrides of the gateway's engine timeouts (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect: float | None = Field(default=None, gt=0)
    first_token: float | None = Field(default=None, gt=0)
    idle: float | None = Field(default=None, gt=0)


class EmbeddingsSpec(BaseModel):
    """A profile's ``embeddings:`` block: its engine also serves ``/v1/embeddings``.

    ``dimensions`` is the vector size the engine returns (the model's hidden size, e.g.
    576 for SmolLM2-135M); ``pooling`` how llama.cpp turns per-token vectors into one
    (its ``--pooling``; vLLM reads it from the model); ``max_input_tokens`` the longest
    input one vector may cover (llama.cpp evaluates an input in one micro-batch, so this
    sizes its ``--ubatch-size``; default 512 there, ``max_model_len`` elsewhere; longer
    inputs are a 400 naming ``input``); ``matryoshka``: the model may shorten its vectors
    on request (OpenAI's ``dimensions`` parameter, passed to the engine).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimensions: int = Field(gt=0)
    pooling: Pooling = "mean"
    max_input_tokens: int = Field(gt=0)
    matryoshka: bool = False


class ModelProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    engine: EngineKind
    hf_id: str | None = None
    # A local dir/file, or "dist:<distribution>:<file inside it>" for model files that
    # ship in a Python package (the embedded GGUF).
    path: str | None = None
    url: str | None = None
    params_b: float = Field(gt=0)
    dtype: Dtype = "float16"
    quantization: str | None = None
    weight_bits: float | None = Field(default=None, gt=0, le=32)
    num_layers: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    context_length: int = Field(gt=0)
    max_model_len: int = Field(gt=0)
    engine_args: dict[str, EngineArg] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    default_params: dict[str, Any] = Field(default_factory=dict)
    chat_template: str | None = None
    embeddings: EmbeddingsSpec | None = None  # None: no /v1/embeddings for this model
    # "embed": an embedding-only model (vLLM runs it as a pooling model: --runner pooling).
    # It serves /v1/embeddings and nothing else: chat requests for it are refused with a 400,
    # and its engine is proven by an embedding instead of a generated token.
    task: Task = "generate"
    # e.g. a reasoning model that thinks for minutes before its first token
    timeouts: ProfileTimeouts | None = None
    description: str = ""
    source_file: str = ""

    def endpoint_timeouts(self, defaults: Timeouts) -> Timeouts | None:
        """The timeouts of this profile's engines: its overrides over ``defaults``."""
        if self.timeouts is None:
            return None
        given = self.timeouts.model_dump(exclude_none=True)
        return replace(defaults, **given)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("must be a lowercase slug: a-z, 0-9, '.', '_', '-'")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        if any(not alias.strip() for alias in value):
            raise ValueError("aliases must not be empty")
        return value

    @field_validator("quantization")
    @classmethod
    def _quantization(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and value.startswith(DIST_PREFIX):
            _split_dist(value)
        return value

    @field_validator("engine_args")
    @classmethod
    def _engine_args(cls, value: dict[str, EngineArg]) -> dict[str, EngineArg]:
        for key in value:
            if key.startswith("-") or not key:
                raise ValueError(f"write engine flags without leading dashes: {key!r}")
        utilization = value.get("gpu-memory-utilization")
        if utilization is not None and not _is_fraction(utilization):
            raise ValueError("gpu-memory-utilization must be a number in (0, 1]")
        return value

    @model_validator(mode="before")
    @classmethod
    def _embedding_input_default(cls, data: Any) -> Any:
        """An ``embeddings:`` block without ``max_input_tokens`` gets the engine's default."""
        spec = data.get("embeddings") if isinstance(data, dict) else None
        if isinstance(spec, dict) and "max_input_tokens" not in spec:
            default = LLAMACPP_EMBEDDING_INPUT if data.get("engine") == "llamacpp" else None
            limit = default or data.get("max_model_len")
            if limit is not None:
                data = {**data, "embeddings": {**spec, "max_input_tokens": limit}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelProfile:
        if self.max_model_len > self.context_length:
            raise ValueError(
                f"max_model_len {self.max_model_len} exceeds context_length {self.context_length}"
            )
        if self.embeddings and self.embeddings.max_input_tokens > self.max_model_len:
            raise ValueError("embeddings.max_input_tokens exceeds max_model_len")
        if self.task == "embed" and self.embeddings is None:
            raise ValueError("task 'embed' needs an 'embeddings:' block (at least 'dimensions')")
        if self.engine == "openai" and not self.url:
            raise ValueError("engine 'openai' needs 'url' (the external server's base URL)")
        if self.engine == "llamacpp" and not self.path:
            raise ValueError("engine 'llamacpp' needs 'path' (the GGUF file)")
        if self.engine == "vllm" and not (self.hf_id or self.path):
            raise ValueError("engine 'vllm' needs 'hf_id' or 'path'")
        if self.quantization and self.weight_bits is None and self.quantization not in QUANT_BITS:
            raise ValueError(
                f"quantization {self.quantization!r} has no known size: set weight_bits"
            )
        for arg, field in MIRRORED_ARGS.items():
            if arg in self.engine_args and self.engine_args[arg] != getattr(self, field):
                raise ValueError(
                    f"engine_args {arg!r} = {self.engine_args[arg]!r} disagrees with"
                    f" {field} = {getattr(self, field)!r}"
                )
        return self

    def model_arg(self) -> str:
        """What the engine loads: the resolved local path if set, else the HF repo id."""
        path = self.resolved_path()
        if path is not None:
            return str(path)
        if self.hf_id:
            return self.hf_id
        raise ProfileError(f"profile {self.id!r} has neither 'path' nor 'hf_id'")

    def resolved_path(self) -> Path | None:
        """The local model path; "dist:" paths are looked up in the installed
        distribution's metadata, so the package (an ``llm`` plugin) is never imported.
        Relative paths are relative to the profile's own file."""
        if self.path is None:
            return None
        if self.path.startswith(DIST_PREFIX):
            distribution, relative = _split_dist(self.path)
            try:
                found = importlib.metadata.distribution(distribution)
            except importlib.metadata.PackageNotFoundError as exc:
                raise ProfileError(
                    f"profile {self.id!r}: Python package {distribution!r} is not installed"
                    f" (it ships {relative})"
                ) from exc
            return Path(str(found.locate_file(relative)))
        path = Path(self.path).expanduser()
        if not path.is_absolute() and self.source_file:
            path = Path(self.source_file).parent / path
        return path

    def bits_per_weight(self) -> float:
        if self.weight_bits is not None:
            return self.weight_bits
        if self.quantization:
            return QUANT_BITS[self.quantization]  # the validator made sure it is known
        return DTYPE_BYTES[self.dtype] * 8.0


def _is_fraction(value: EngineArg) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value <= 1


def _split_dist(path: str) -> tuple[str, str]:
    parts = path.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError(f"expected 'dist:<distribution>:<relative file>', got {path!r}")
    return parts[1], parts[2]


def shipped_dir() -> Traversable:
    return resources.files("chatgate.engines") / "profiles"


def load_profiles(extra_dir: Path | None = None) -> dict[str, ModelProfile]:
    """Shipped profiles plus ``extra_dir``'s; an admin profile replaces a shipped one
    with the same id. Raises ProfileError naming the file (and field) at fault."""
    profiles = _load_dir(shipped_dir())
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ProfileError(f"profiles directory {extra_dir} does not exist")
        profiles.update(_load_dir(extra_dir))
    _check_names(profiles)
    return dict(sorted(profiles.items()))


def _load_dir(directory: Traversable) -> dict[str, ModelProfile]:
    found: dict[str, ModelProfile] = {}
    entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    for entry in entries:
        if not entry.name.endswith(PROFILE_SUFFIXES) or not entry.is_file():
            continue
        profile = load_profile_file(entry)
        if profile.id in found:
            raise ProfileError(
                f"{entry}: id {profile.id!r} is already defined in {found[profile.id].source_file}"
            )
        found[profile.id] = profile
    return found


def load_profile_file(entry: Traversable | Path) -> ModelProfile:
    source = str(entry)
    try:
        data = yaml.safe_load(entry.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{source}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a mapping of profile fields")
    if "source_file" in data:
        raise ProfileError(f"{source}: field 'source_file' is set by chatgate, remove it")
    try:
        return ModelProfile.model_validate({**data, "source_file": source})
    except ValidationError as exc:
        raise ProfileError(f"{source}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"field {location!r}: {message}" if location else message)
    return "; ".join(problems)


def _check_names(profiles: dict[str, ModelProfile]) -> None:
    """Every id and alias must name one profile, case-insensitively."""
    owners: dict[str, ModelProfile] = {}
    for profile in profiles.values():
        for name in dict.fromkeys([profile.id, *(a.lower() for a in profile.aliases)]):
            other = owners.get(name)
            if other is not None and other.id != profile.id:
                raise ProfileError(
                    f"{profile.source_file}: name {name!r} is already used by profile"
                    f" {other.id!r} ({other.source_file})"
                )
            owners[name] = profile


def find_profile(profiles: dict[str, ModelProfile], name: str) -> ModelProfile:
    """The profile named by id or alias (case-insensitive); a Hugging Face repo id also
    works when exactly one profile uses it."""
    key = name.strip().lower()
    for profile in profiles.values():
        if key == profile.id or key in (alias.lower() for alias in profile.aliases):
            return profile
    by_repo = [p for p in profiles.values() if p.hf_id and p.hf_id.lower() == key]
    if len(by_repo) == 1:
        return by_repo[0]
    known = ", ".join(sorted(profiles)) or "none"
    raise ProfileError(f"unknown model profile {name!r}; known profiles: {known}")


def engine_kind(profile_id: str, profiles: dict[str, ModelProfile]) -> str | None:
    """The engine kind ("llamacpp", "vllm", "openai") of the model whose profile id (a
    registry entry's ``profile_id``, else its id) is given: the embedded engine and managed
    engines have a profile, attached engines when named like one; None: unknown."""
    profile = profiles.get(profile_id)
    return profile.engine if profile is not None else None
