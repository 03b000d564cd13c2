"""One real ``chatgate serve`` with the embedded engine for every SDK module here: the
engine starts once (package scope), each SDK gets its own API keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.harness import embedded_gateway
from tests.e2e.harness import Served


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with embedded_gateway(tmp_path_factory) as instance:
        yield instance
