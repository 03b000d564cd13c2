"""``chatgate doctor``: can the embedded engine run on this machine, and how fast?

It prints the CPU's model and SIMD features, how the installed llama-server was built
(portable or not, its CPU variants), then runs it: the variant llama.cpp picked for this
CPU and a 1-token generation. Exit status 1 when the engine cannot generate.
"""

from __future__ import annotations

from typing import Annotated

import typer

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
    read_build_info,
)
from chatgate.engines.runtime.trial import run_trial
from chatgate.hardware.cpu import read_cpu
from chatgate.settings import Settings


def doctor(
    timeout: Annotated[float, typer.Option(help="Seconds the trial run may take")] = 120.0,
) -> None:
    """CPU features, the llama.cpp build and a real 1-token generation."""
    settings = Settings()
    cpu = read_cpu()
    typer.echo(f"CPU          {cpu.summary()}")
    try:
        server = locate_llama_server(settings.llama_server)
        model = settings.embedded_model_path or locate_smollm2_gguf()
    except EngineSetupError as exc:
        typer.echo(f"Engine       NOT INSTALLED: {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"llama-server {server}")
    info = read_build_info(server)
    if info is None:
        typer.echo("Build        unknown (no build-info.json beside it: not built by chatgate)")
    else:
        typer.echo(f"Build        {info.summary()}; {info.data.get('source', '')}")
        excluded = info.data.get("excluded_variants") or {}
        for name, why in excluded.items():
            typer.echo(f"             left out: {name} ({why})")
    if cpu.has_amx:
        typer.echo("             this CPU has AMX; the AMX variant is not built (docs/engines.md)")
    typer.echo(f"Trial        starting llama-server with {model.name} …")
    result = run_trial(server, model, timeout)
    typer.echo(f"Variant      {result.variant or 'unknown (not a run-time variant build)'}")
    if result.cpu_features:
        typer.echo(f"llama.cpp    {result.cpu_features}")
    if not result.ok:
        typer.echo(f"Generation   FAILED after {result.seconds:.1f} s: {result.error}")
        typer.echo("Last log lines:\n" + result.log_tail)
        raise typer.Exit(1)
    typer.echo(f"Generation   ok: one token {result.seconds:.1f} s after starting the engine")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
