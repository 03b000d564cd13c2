"""schemathesis hooks for tests/contract (loaded by the `st` CLI, in its own venv).

The admin signs in through the API itself, and its own account is kept out of reach of
generated requests: schemathesis learns ids from responses, and a generated
``PATCH /api/admin/users/{id}`` with a new password would lock the run out (a token
revoked by a generated logout is simply fetched again, on the next 401).
"""

from __future__ import annotations

import os
from typing import Any

import requests
import schemathesis

_ADMIN_PATHS = {"/api/admin/users/{user_id}", "/api/admin/users/{user_id}/limits"}


@schemathesis.auth(refresh_interval=600)
class AdminLogin:
    def get(self, case: Any, context: Any) -> str:
        response = requests.post(
            os.environ["CONTRACT_BASE_URL"] + "/api/auth/login",
            json={
                "username": os.environ["CONTRACT_USERNAME"],
                "password": os.environ["CONTRACT_PASSWORD"],
            },
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Changes aimed at the signed-in admin's own account go to a decoy user instead."""
    params = case.path_parameters
    if (
        case.operation.path in _ADMIN_PATHS
        and params
        and (str(params.get("user_id")) == os.environ["CONTRACT_ADMIN_ID"])
    ):
        params["user_id"] = int(os.environ["CONTRACT_DECOY_ID"])
