"""Parameters shared by the routers.

Row ids are 64-bit integers in both databases: a larger one in a path or query would
reach the driver and fail there (``OverflowError``, a 500), so it is refused as a 400
before, like any other invalid parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ROW_ID = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
