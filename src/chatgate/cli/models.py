"""``chatgate models list|check``: the model profiles and whether they fit the GPUs; and
``deploy|undeploy|rollback|split``: fine-tuned versions, through a running gateway."""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import typer

from chatgate.cli.hardware import table_lines
from chatgate.cli.probe import base_url
from chatgate.engines.catalog import compat
from chatgate.engines.catalog.compat import CompatReport, HardwareSpec
from chatgate.engines.catalog.profiles import (
    ModelProfile,
    ProfileError,
    find_profile,
    load_profiles,
)
from chatgate.hardware.memory import system_memory_bytes
from chatgate.hardware.sizes import gib
from chatgate.settings import Settings

EXIT_FITS = 0
EXIT_DOES_NOT_FIT = 1
EXIT_USAGE = 2

models_app = typer.Typer(help="Model profiles and whether they fit the GPUs", no_args_is_help=True)

VERDICT_LABELS = {
    "fits": "fits",
    "does_not_fit": "does not fit",
    "no_gpu": "no GPU",
    "cpu": "CPU",
}
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _profiles() -> dict[str, ModelProfile]:
    try:
        return load_profiles(Settings().profiles_dir)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc


def _verdict_label(report: CompatReport) -> str:
    if report.verdict == "fits_with_tp":
        return f"fits with TP={report.tensor_parallel_size}"
    return VERDICT_LABELS[report.verdict]


@models_app.command("list")
def list_models(json_output: JsonOption = False) -> None:
    """All profiles (shipped and CHATGATE_PROFILES_DIR) with the verdict for this machine."""
    profiles = _profiles()
    hardware = compat.detected_hardware()
    reports = {pid: compat.check_profile(p, hardware, profiles) for pid, p in profiles.items()}
    if json_output:
        items = [
            {**p.model_dump(mode="json"), "check": reports[pid].model_dump(mode="json")}
            for pid, p in profiles.items()
        ]
        typer.echo(json.dumps({"hardware": hardware.model_dump(), "profiles": items}, indent=2))
        return
    rows = [["ID", "NAME", "ENGINE", "PARAMS", "DTYPE/QUANT", "MAX LEN", "CONTEXT", "HERE"]]
    for pid, p in profiles.items():
        rows.append(
            [
                pid,
                p.name,
                p.engine,
                f"{p.params_b:g}B",
                compat.precision(p),
                str(p.max_model_len),
                str(p.context_length),
                _verdict_label(reports[pid]),
            ]
        )
    for line in table_lines(rows):
        typer.echo(line)
    typer.echo("")
    typer.echo(f"HERE: {_hardware_line(hardware)}. Details: chatgate models check ID")


def _hardware_line(hardware: HardwareSpec) -> str:
    if hardware.gpus == 0:
        return "no GPU detected" if hardware.detected else "no GPU"
    names = f" ({', '.join(sorted(set(hardware.names)))})" if hardware.names else ""
    memory = gib(hardware.gpu_memory_bytes) if hardware.gpu_memory_bytes else "unknown memory"
    source = "detected" if hardware.detected else "given"
    return f"{hardware.gpus} x {memory} GPU{names}, {source}"


def _given_hardware(gpus: int | None, gpu_memory: str | None) -> HardwareSpec:
    """--gpus/--gpu-memory, completed from the detected GPUs; nothing given: detected."""
    if gpus is None and gpu_memory is None:
        return compat.detected_hardware()
    memory: int | None = None
    if gpu_memory is not None:
        try:
            memory = compat.parse_size(gpu_memory)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--gpu-memory") from exc
        if memory <= 0:
            raise typer.BadParameter("must be more than 0", param_hint="--gpu-memory")
    detected = None
    if memory is None or gpus is None:
        detected = compat.detected_hardware()
        memory = memory or detected.gpu_memory_bytes
    count = gpus if gpus is not None else max(1, detected.gpus if detected else 0)
    if count and memory is None:
        message = "no GPU detected to read the memory from: give it, e.g. --gpu-memory 24GiB"
        raise typer.BadParameter(message, param_hint="--gpu-memory")
    return HardwareSpec(
        gpus=count,
        gpu_memory_bytes=memory if count else None,
        detected=False,
        system_memory_bytes=system_memory_bytes(),
    )


def _print_report(profile: ModelProfile, hardware: HardwareSpec, report: CompatReport) -> None:
    summary = f"{profile.name}, {profile.engine}, {profile.params_b:g}B params"
    typer.echo(f"{profile.id}: {summary}, {compat.precision(profile)}")
    typer.echo(f"Hardware: {_hardware_line(hardware)}")
    typer.echo(f"Verdict:  {_verdict_label(report)}")
    typer.echo(report.message)
    if report.suggested_args:
        kind = "vLLM" if profile.engine == "vllm" else "llama.cpp server"
        typer.echo(f"Suggested {kind} flags: {shlex.join(report.suggested_args)}")
    if report.alternatives:
        typer.echo(f"Would fit instead: {', '.join(report.alternatives)}")
    if report.verdict == "no_gpu":
        typer.echo("To check against a GPU you do not have here: --gpus N --gpu-memory SIZE")


@models_app.command("check")
def check(
    profile: Annotated[str, typer.Argument(help="Profile id or alias")],
    gpus: Annotated[
        int | None, typer.Option(min=0, max=64, help="Number of GPUs (default: detected)")
    ] = None,
    gpu_memory: Annotated[
        str | None,
        typer.Option(help="Memory per GPU: 24GiB, 24G (binary), 24GB (decimal), 24576MiB"),
    ] = None,
    utilization: Annotated[
        float | None,
        typer.Option(
            min=0.01, max=1.0, help="gpu-memory-utilization (default: the profile's, else 0.9)"
        ),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(min=1, help="Served context (default: the profile's)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Whether PROFILE fits the detected (or given) GPUs, with the numbers and vLLM flags.

    Exit status: 0 when it can run (fits, fits with tensor parallelism, runs on CPU) or
    when there is no GPU to check against (the message says so); 1 when it does not
    fit; 2 for an unknown profile or bad options.
    """
    profiles = _profiles()
    try:
        chosen = find_profile(profiles, profile)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    hardware = _given_hardware(gpus, gpu_memory)
    try:
        report = compat.check_profile(
            chosen, hardware, profiles, utilization=utilization, max_model_len=max_model_len
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if json_output:
        output: dict[str, Any] = {"hardware": hardware.model_dump(), **report.model_dump()}
        typer.echo(json.dumps(output, indent=2))
    else:
        _print_report(chosen, hardware, report)
    if report.verdict == "does_not_fit":
        raise typer.Exit(EXIT_DOES_NOT_FIT)


# ----- fine-tuned versions, through the running gateway (it restarts its own engines)

DEPLOY_TIMEOUT_SECONDS = 2400.0  # beyond the gateway's own bound (a download, drain, two starts)
UrlOption = Annotated[
    str | None, typer.Option("--url", help="The gateway (default: CHATGATE_HOST/PORT)")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="CHATGATE_ADMIN_TOKEN", help="An administrator's token or API key"
    ),
]


def _admin_post(url: str | None, token: str | None, path: str, body: dict[str, Any]) -> Any:
    return _admin_call(url, token, "POST", path, body)


def _admin_call(
    url: str | None, token: str | None, method: str, path: str, body: dict[str, Any] | None
) -> Any:
    """Call the gateway's admin API; its error message and exit status 1 on failure."""
    settings = Settings()
    root = (url or base_url(settings.host, settings.port)).rstrip("/")
    if not token:
        raise _usage("an administrator's token is needed: --token or CHATGATE_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        root + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=DEPLOY_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        typer.echo(f"error: {detail}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: the gateway at {root} did not answer: {exc}", err=True)
        raise typer.Exit(1) from exc


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


@models_app.command("deploy")
def deploy_version(
    spec: Annotated[str, typer.Argument(help="BASE:NAME@VERSION or BASE:NAME@ALIAS")],
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Serve a fine-tuned version as the model id BASE:NAME@VERSION."""
    result = _admin_post(url, token, "/api/admin/models/deploy", {"model": spec})
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(f"deployed {result['model_id']} (on {result['base']})")


@models_app.command("undeploy")
def undeploy_version(
    model_id: Annotated[str, typer.Argument(help="BASE:NAME@VERSION, e.g. smollm2-135m:zanthia@3")],
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop serving a fine-tuned version on every gateway (and any split to it)."""
    path = "/api/admin/models/deployments/" + urllib.parse.quote(model_id, safe="")
    result = _admin_call(url, token, "DELETE", path, None)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"undeployed {model_id}")
    for item in result["deployments"]:
        typer.echo(f"  still deployed: {item['model_id']}")


@models_app.command("rollback")
def rollback_version(
    name: Annotated[str, typer.Argument(help="BASE:NAME, e.g. smollm2-135m:zanthia")],
    to_base: Annotated[
        bool,
        typer.Option(
            "--to-base", help="Undeploy every version of NAME: its base model answers alone"
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move the alias champion back to the previous version and deploy it (--to-base:
    serve the base model alone)."""
    body = {"name": name, "to_base": to_base}
    result = _admin_post(url, token, "/api/admin/models/rollback", body)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    elif to_base:
        gone = ", ".join(result["undeployed"]) or "none was deployed"
        typer.echo(f"{result['base']} answers alone (undeployed: {gone})")
    else:
        typer.echo(f"champion is now {result['model_id']}")


@models_app.command("split")
def split_chats(
    base: Annotated[str, typer.Argument(help="The base model, e.g. smollm2-135m")],
    to: Annotated[str, typer.Option("--to", help="A deployed BASE:NAME@VERSION")],
    percent: Annotated[int, typer.Option("--percent", min=0, max=100, help="0 removes it")],
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Answer PERCENT % of BASE's web chat conversations with a fine-tuned version."""
    body = {"base": base, "to": to, "percent": percent}
    result = _admin_post(url, token, "/api/admin/models/splits", body)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
        return
    for item in result["splits"]:
        typer.echo(f"{item['base']}: {item['percent']}% of web chats to {item['to']}")
        for rates in item["rates"]:
            up = "-" if rates["up_rate"] is None else f"{rates['up_rate']:.0%}"
            typer.echo(f"  {rates['model']}: {rates['answers']} answers, {up} thumbs up")
    if not result["splits"]:
        typer.echo("no splits")
