"""Locating the external validators the deployment tests run (nginx, hadolint, checkov, ...).

A missing tool skips its test with the reason and the way to install it; under CI=true it
fails instead, so a CI image without the tool cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.helpers import missing as missing  # the suite-wide rule, for the deploy tests

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def require_tool(name: str, install: str) -> str:
    """The path of an executable (the test venv first, then PATH), or skip/fail."""
    local = VENV_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        missing(f"{name} is not installed ({install})")
        raise AssertionError("unreachable")
    return found
