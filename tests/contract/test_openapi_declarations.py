"""What every operation of /openapi.json must declare, checked on the schema itself (fast;
test_schemathesis.py checks the running gateway against it)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from chatgate.app import create_app
from chatgate.openapi_responses import without_fastapi_422
from chatgate.settings import Settings
from tests.conftest import TEST_SECRET

PUBLIC = {"/health", "/health/ready", "/api/auth/login", "/api/auth/refresh"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    settings = Settings(data_dir=data_dir, jwt_secret=TEST_SECRET, embedded_engine=False)
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_operation_declares_its_errors(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        declared = set(operation["responses"])
        where = f"{method} {path}: {sorted(declared)}"
        assert "503" in declared, where  # draining, or the database is down
        assert "default" not in declared, where  # each status, not a catch-all
        if path not in PUBLIC:
            assert {"401", "403"} <= declared, where
        if "requestBody" in operation:
            assert {"400", "413"} <= declared, where


def test_errors_have_the_one_shape(schema: dict[str, Any]) -> None:
    # (without FastAPI's own 422, which this API never sends: see the test below)
    for method, path, operation in operations(without_fastapi_422(copy.deepcopy(schema))):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and path != "/health/ready":
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)


def test_fastapis_422_can_go(schema: dict[str, Any]) -> None:
    """Invalid input is a 400 here; FastAPI's 422 (never sent) is dropped, an engine's
    422 on /v1 (relayed) stays."""
    cleaned = without_fastapi_422(copy.deepcopy(schema))
    for method, path, operation in operations(cleaned):
        if "422" in operation["responses"]:
            assert path.startswith("/v1/") and method == "POST", (method, path)
    assert "HTTPValidationError" not in cleaned["components"]["schemas"]
