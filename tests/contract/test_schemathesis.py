"""The OpenAPI contract, checked by schemathesis against a running gateway.

``st run --checks all`` over ``/openapi.json``, signed in as an admin: no operation may
answer a server error, every status it answers must be declared in its entry, and its
bodies and headers must match what is declared. The examples per operation are bounded
and the seed fixed (``CONTRACT_SEED`` picks another), so the run is the same on every
machine and fits the suite's budget on two cores.

schemathesis lives in the tools venv (``make`` installs it into ``.venv-tools``, beside
checkov): its pins are its own.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest

from chatgate.auth.passwords import hash_password
from chatgate.db import migrate
from chatgate.db.models import User
from tests.conftest import gateway_settings
from tests.deploy.tooling import ROOT, require_tool
from tests.fakes.upstream import FakeUpstream
from tests.helpers import PASSWORD, Gateway, start_gateway

HOOKS = Path(__file__).with_name("st_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# The account the run signs in with, and the one its own changes are sent to instead
# (st_hooks.py).
ADMIN_ID, DECOY_ID = 7_000_001, 7_000_002
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "10"))
SEED = os.environ.get("CONTRACT_SEED", "20260101")
INSTALL = "make .venv-tools (pip install schemathesis==4.32.5 in its own venv)"

pytestmark = pytest.mark.timeout(600)


def st_binary() -> str:
    tools = ROOT / ".venv-tools" / "bin" / "st"
    if tools.is_file():
        return str(tools)
    return require_tool("st", INSTALL)


def st_command(st: str, base_url: str, report: Path) -> list[str]:
    return [
        st, "--config-file", str(CONFIG), "--no-color",
        "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED,
        # One at a time: SQLite takes one writer, and a generated import of thousands of
        # messages holds it long enough to time others out (a load finding, not a contract
        # one). Response times are not judged here: the machine is shared and small.
        "--workers", "1",
        "--request-timeout", "60",
        "--max-response-time", "60",
        "--report", "junit", "--report-junit-path", str(report),
        # e.g. "--include-path /api/keys --output-sanitize false" while debugging
        *os.environ.get("CONTRACT_ST_ARGS", "").split(),
    ]  # fmt: skip


async def create_admin(gateway: Gateway) -> str:
    suffix = uuid.uuid4().hex[:8]
    async with gateway.state.sessionmaker() as db:
        for user_id, prefix in ((ADMIN_ID, "admin"), (DECOY_ID, "decoy")):
            username = f"contract-{prefix}-{suffix}"
            hashed = hash_password(PASSWORD)
            db.add(User(id=user_id, username=username, password_hash=hashed, role="admin"))
        await db.commit()
    return f"contract-admin-{suffix}"


async def test_openapi_contract(
    tmp_path: Path, upstream: FakeUpstream, fast_passwords: None
) -> None:
    st = st_binary()
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    # A generated model switch must not start real engines: neither engine program exists
    # here, so a switch is refused (409) or fails at once, as documented.
    # Generated logins with the admin's name and wrong passwords must not lock it out.
    settings = gateway_settings(
        tmp_path, url, upstream, login_failures_per_user=10**6, login_failures_per_ip=10**6,
        llama_server=tmp_path / "no-llama-server", vllm_python=str(tmp_path / "no-python"),
        train_python=str(tmp_path / "no-train-python"),  # a guessed dataset never trains
    )  # fmt: skip
    async with start_gateway(settings, upstream) as gateway:
        admin = await create_admin(gateway)
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "CONTRACT_BASE_URL": gateway.url,
            "CONTRACT_USERNAME": admin,
            "CONTRACT_PASSWORD": PASSWORD,
            "CONTRACT_ADMIN_ID": str(ADMIN_ID),
            "CONTRACT_DECOY_ID": str(DECOY_ID),
        }
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *st_command(st, gateway.url, tmp_path / "junit.xml"),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        took = time.monotonic() - started
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    print(f"schemathesis: {took:.0f}s\n{text[-3000:]}")
    assert process.returncode == 0, (
        f"schemathesis found contract violations (all of it: {tmp_path / 'schemathesis.txt'}):"
        f"\n{text[-20000:]}"
    )
