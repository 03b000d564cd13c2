"""Deploy and roll back fine-tuned versions on the running engines.

The MLflow registry is read by tools/train/registry.py in .venv-train (the gateway never
imports MLflow). llama.cpp cannot load an adapter into a running server, so a deploy
restarts the base model's engine with the new list of ``--lora`` files, the way a model
switch does: its entries (the base and its versions) drain first (new requests get 503
``model_switching``, running ones finish within ``switch_drain_seconds``), then the engine
restarts on the same port. If it does not come up with the new adapter, the previous list
is restored. vLLM loads the adapter at runtime (``/v1/load_lora_adapter``): no restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from chatgate.engines.launch import supervisor_for
from chatgate.engines.manager import DRAIN_POLL_S, STOP_TIMEOUT_S, EngineManager
from chatgate.errors import APIError
from chatgate.finetune import command, deploy
from chatgate.finetune.deploy import Deployment, VersionRef
from chatgate.finetune.split import SplitTable
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


class Rollout:
    """Deploys on this gateway's engines; one deploy or rollback at a time."""

    def __init__(self, settings: Settings, manager: EngineManager) -> None:
        self.settings = settings
        self.manager = manager
        self.splits = SplitTable(settings)  # the web chat's A/B splits (finetune/split.py)
        self._lock = asyncio.Lock()

    def bases(self) -> list[str]:
        return list(self.manager.profiles)

    async def deploy(self, spec: str) -> Deployment:
        """Fetch ``spec``'s version (a number or an alias) and serve it."""
        ref = deploy.parse_spec(spec, self.bases())
        profile = self.manager.profiles.get(ref.base)
        if profile is None or self.manager.registry.get(ref.base) is None:
            raise APIError(
                409, f"the base model '{ref.base}' is not served here", "base_not_served"
            )
        async with self._lock:
            found = await registry_call(self.settings, "resolve", ref.registered, ref.ref)
            deployment = _deployment(ref, found)
            before = deploy.load(self.settings)
            after = deploy.with_deployment(before, deployment)
            deploy.save(self.settings, after)
            try:
                if profile.engine == "vllm":
                    await self._load_vllm(ref.base, deployment)
                elif after != before or self.manager.supervisor(ref.base) is None:
                    await self._restart(ref.base, before)
            except BaseException:
                deploy.save(self.settings, before)
                raise
            deploy.register(self.manager.registry, self.manager.profiles, after)
            return deployment

    async def rollback(self, spec: str) -> Deployment:
        """``champion`` back to the previous version, which is then deployed."""
        ref = deploy.parse_spec(spec if "@" in spec else f"{spec}@champion", self.bases())
        moved = await registry_call(self.settings, "rollback", ref.registered)
        return await self.deploy(ref.model_id(int(moved["version"])))

    async def _load_vllm(self, base: str, deployment: Deployment) -> None:
        if deployment.adapter_dir is None:
            raise APIError(409, f"{deployment.model_id} has no PEFT adapter for vLLM", "no_adapter")
        entry = self.manager.registry.get(base)
        body = {"lora_name": deployment.model_id, "lora_path": deployment.adapter_dir}
        timeout = aiohttp.ClientTimeout(total=LOAD_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            for endpoint in entry.endpoints if entry else []:
                url = endpoint.root_url + "/v1/load_lora_adapter"
                async with session.post(url, json=body) as response:
                    text = await response.text()
                    if response.status != 200 and "already been loaded" not in text:
                        raise APIError(
                            502,
                            f"{endpoint.name} did not load the adapter: {text[:300]}",
                            "adapter_load_failed",
                        )

    async def _restart(self, base: str, before: list[Deployment]) -> None:
        """Drain the base model and its versions, restart its engine (same port) with the
        saved adapter list; on failure the previous list is restored and restarted."""
        if self.manager.supervisor(base) is None:
            raise APIError(409, f"the engine of '{base}' is not run by chatgate", "not_managed")
        entries = [
            self.manager.registry.get(base),
            *deploy.versions_of(self.manager.registry, base),
        ]
        for entry in entries:
            if entry is not None:
                entry.draining = True
        try:
            await self._drain(base)
            if await self._restart_engine(base):
                return
            deploy.save(self.settings, before)
            if not await self._restart_engine(base):
                log.error("the engine of %s did not restart with its previous adapters", base)
            raise APIError(
                502, f"the engine of '{base}' did not start with the adapter", "deploy_failed"
            )
        finally:
            for entry in entries:
                if entry is not None:
                    entry.draining = False

    async def _drain(self, base: str) -> None:
        entry = self.manager.registry.get(base)
        deadline = time.monotonic() + self.settings.switch_drain_seconds
        while entry is not None and entry.outstanding() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)

    async def _restart_engine(self, base: str) -> bool:
        old = self.manager.supervisor(base)
        profile = self.manager.profiles[base]
        port = old.port if old is not None else None
        if old is not None:
            await asyncio.to_thread(old.stop, STOP_TIMEOUT_S)
        new = supervisor_for(profile, self.settings, port=port)
        new.start()
        ready = await asyncio.to_thread(new.wait_ready, self.settings.switch_ready_seconds)
        if ready:
            self.manager.adopt(base, new)
        else:
            await asyncio.to_thread(new.stop, STOP_TIMEOUT_S)
        return ready


def _deployment(ref: VersionRef, found: dict[str, Any]) -> Deployment:
    version = int(found["version"])
    return Deployment(
        model_id=ref.model_id(version),
        base=ref.base,
        name=ref.name,
        version=version,
        gguf=str(found["gguf"]),
        adapter_dir=found.get("adapter_dir"),
    )
