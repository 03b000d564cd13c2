"""Fine-tuned versions onto a running engine: what the host's engine leader does when
its applied list must change (``reconcile.py`` decides when).

The MLflow registry is read by tools/train/registry.py in .venv-train (the gateway never
imports MLflow). llama.cpp cannot load an adapter into a running server, so a change
restarts the base model's engine with the new list of ``--lora`` files, the way a model
switch does: its entries (the base and its versions) drain first (new requests get 503
``model_switching`` on every gateway of the host, which mirror the draining flags; running
ones finish within ``switch_drain_seconds``, the followers' counted as for a switch: they
report them under the restart's ``drain_id``, coordinator.py), then the engine restarts
on the same port.
vLLM loads and unloads adapters at runtime (``/v1/load_lora_adapter``): no restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import aiohttp

from chatgate.engines.runtime.launch import supervisor_for
from chatgate.engines.runtime.manager import (
    DRAIN_POLL_S,
    DRAIN_SETTLE_S,
    FLEET_SETTLE_S,
    STOP_TIMEOUT_S,
    EngineManager,
)
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.errors import APIError
from chatgate.finetune import command, deploy
from chatgate.finetune.deploy import Deployment
from chatgate.finetune.desired import Desired
from chatgate.settings import Settings

log = logging.getLogger("chatgate.finetune")

REGISTRY_TIMEOUT_S = 300.0  # a download of a large adapter from a tracking server
LOAD_TIMEOUT_S = 120.0


async def registry_call(settings: Settings, *args: str) -> dict[str, Any]:
    """Run tools/train/registry.py (resolve/rollback) in the training venv."""
    command.check_trainer(settings)
    script = command.train_script(settings).parent / "registry.py"
    argv = [str(command.train_python(settings)), str(script)]
    argv += ["--data-dir", str(settings.data_dir), *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=command.environment(settings),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), REGISTRY_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise APIError(
            504, "the model registry did not answer in time", "registry_timeout"
        ) from None
    lines = out.decode().strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if process.returncode == 0 and "version" in result:
        return result
    if "error" in result:
        raise APIError(404, str(result["error"]), "model_version_not_found")
    log.error("registry.py %s failed: %s", args[0], err.decode()[-2000:])
    raise APIError(502, "the model registry could not be read (see the log)", "registry_error")


async def resolve(settings: Settings, want: Desired) -> Deployment:
    """``want``'s files on this host (downloaded into the data dir when missing)."""
    found = await registry_call(settings, "resolve", want.registered, str(want.version))
    return Deployment(
        model_id=want.model_id,
        base=want.base,
        name=want.name,
        version=int(found["version"]),
        gguf=str(found["gguf"]),
        adapter_dir=found.get("adapter_dir"),
    )


class EngineRestarts:
    """Restart a base model's llama.cpp engine (same port) with drain; one at a time."""

    def __init__(self, settings: Settings, manager: EngineManager) -> None:
        self.settings = settings
        self.manager = manager

    async def restart(self, base: str) -> bool:
        """Drain the base model and its versions, restart its engine with the applied list
        as saved now; False when it did not become ready (it is stopped then)."""
        if self.manager.supervisor(base) is None:
            return False
        entries = [
            self.manager.registry.get(base),
            *deploy.versions_of(self.manager.registry, base),
        ]
        for entry in entries:
            if entry is not None:
                entry.draining = True
        self.manager.drain_id = f"restart-{uuid.uuid4().hex[:12]}"
        self._changed()
        try:
            await self._drain(self.manager.drain_id)
            return await self._restart_engine(base)
        finally:
            for entry in entries:
                if entry is not None:
                    entry.draining = False
            self.manager.drain_id = None
            self._changed()

    def _changed(self) -> None:
        if self.manager.fleet is not None:  # the followers mirror the draining flags
            self.manager.fleet.changed()

    async def _drain(self, drain_id: str) -> None:
        """Until no gateway of the host has a request on the draining entries (the
        followers report theirs under ``drain_id``), or the drain time is up."""
        deadline = time.monotonic() + self.settings.switch_drain_seconds
        fleet = self.manager.fleet
        settle = DRAIN_SETTLE_S + (FLEET_SETTLE_S if fleet is not None else 0.0)
        await asyncio.sleep(min(settle, self.settings.switch_drain_seconds))
        while time.monotonic() < deadline:
            here = sum(e.outstanding() for e in self.manager.registry.all_models() if e.draining)
            if here == 0 and (fleet is None or await fleet.outstanding(drain_id) == 0):
                return
            await asyncio.sleep(DRAIN_POLL_S)

    async def _restart_engine(self, base: str) -> bool:
        old = self.manager.supervisor(base)
        profile = self.manager.profiles[base]
        port = old.port if old is not None else None
        if old is not None:
            await asyncio.to_thread(old.stop, STOP_TIMEOUT_S)
        new = supervisor_for(profile, self.settings, port=port)
        new.start()
        try:
            ready = await asyncio.to_thread(new.wait_ready, self.settings.switch_ready_seconds)
        except asyncio.CancelledError:  # shutting down: no engine left behind unsupervised
            await asyncio.to_thread(new.stop, STOP_TIMEOUT_S)
            raise
        if ready:
            self.manager.adopt(base, new)
        else:
            await asyncio.to_thread(new.stop, STOP_TIMEOUT_S)
        return ready


async def load_vllm(endpoints: list[Endpoint], deployment: Deployment) -> None:
    """Load ``deployment``'s PEFT adapter on every replica (502 naming the one refusing)."""
    if deployment.adapter_dir is None:
        raise APIError(409, f"{deployment.model_id} has no PEFT adapter for vLLM", "no_adapter")
    body = {"lora_name": deployment.model_id, "lora_path": deployment.adapter_dir}
    for endpoint, status, text in await _post_all(endpoints, "/v1/load_lora_adapter", body):
        if status != 200 and "already been loaded" not in text:
            raise APIError(
                502,
                f"{endpoint.name} did not load the adapter: {text[:300]}",
                "adapter_load_failed",
            )


async def unload_vllm(endpoints: list[Endpoint], model_id: str) -> None:
    """Unload an undeployed adapter (an engine that no longer has it is fine)."""
    body = {"lora_name": model_id}
    for endpoint, status, text in await _post_all(endpoints, "/v1/unload_lora_adapter", body):
        if status != 200:
            log.warning("%s did not unload %s: %s", endpoint.name, model_id, text[:300])


async def _post_all(
    endpoints: list[Endpoint], path: str, body: dict[str, Any]
) -> list[tuple[Endpoint, int, str]]:
    answers: list[tuple[Endpoint, int, str]] = []
    timeout = aiohttp.ClientTimeout(total=LOAD_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        for endpoint in endpoints:
            try:
                async with session.post(endpoint.root_url + path, json=body) as response:
                    answers.append((endpoint, response.status, await response.text()))
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers.append((endpoint, 0, f"unreachable: {exc}"))
    return answers
