"""The SPA: files, fallback, caching, CSP, and API paths it must not shadow."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.errors import APIError
from chatgate.web.router import spa_response
from tests.helpers import Gateway


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "assets" / "app-1a2b.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("no")
    return tmp_path


def test_assets_are_immutable_and_other_files_revalidate(built: Path) -> None:
    asset = spa_response(built, "assets/app-1a2b.js")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    icon = spa_response(built, "favicon.svg")
    assert icon.headers["cache-control"] == "no-cache"


def test_client_routes_fall_back_to_index(built: Path) -> None:
    for path in ("", "chat/123", "settings", "../secret.txt", "assets/../../secret.txt"):
        response = spa_response(built, path)
        assert Path(response.path).name == "index.html", path  # type: ignore[attr-defined]


def test_api_paths_are_never_the_spa(built: Path) -> None:
    for path in ("api/nope", "v1/nope", "health/x", "metrics"):
        with pytest.raises(APIError):
            spa_response(built, path)


def test_missing_build_says_how_to_build(tmp_path: Path) -> None:
    response = spa_response(tmp_path, "")
    assert response.status_code == 503 and b"make" in response.body


async def test_csp_differs_for_api_and_app(gateway: Gateway) -> None:
    async with gateway.client() as client:
        page = await client.get("/some/client/route")
        api = await client.get("/api/nope")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
