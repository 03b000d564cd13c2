"""The fleet's desired deployments and splits, in the database (``model_deployments``,
``model_splits``): any gateway writes them (the admin API), every gateway reads them
(``reconcile.py``). Nothing host-local lives here: where a host keeps a version's files
is its own applied list (``deploy.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.db.models import ModelDeployment, ModelSplit, utcnow
from chatgate.finetune.deploy import VersionRef
from chatgate.finetune.split import Split

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Desired:
    """One version the fleet should serve; ``request_id`` names the deploy that asked
    (its failure is recorded against it, so a newer deploy is never told an older one's)."""

    model_id: str
    base: str
    name: str
    version: int
    registered: str
    request_id: str
    deployed_at: datetime
    deployed_by: int | None = None
    error: str | None = None


def _of(row: ModelDeployment) -> Desired:
    return Desired(
        row.model_id, row.base, row.name, row.version, row.registered, row.request_id,
        row.deployed_at, row.deployed_by, row.error,
    )  # fmt: skip


async def rows(session: AsyncSession) -> list[Desired]:
    """In deploy order (the order a host appends them to its engine's adapters)."""
    found = await session.scalars(
        select(ModelDeployment).order_by(ModelDeployment.deployed_at, ModelDeployment.model_id)
    )
    return [_of(row) for row in found]


async def put(session: AsyncSession, ref: VersionRef, version: int, user_id: int | None) -> Desired:
    """Ask for ``version`` (again: a failure recorded before is cleared, a new attempt)."""
    try:
        return await _put(session, ref, version, user_id)
    except IntegrityError:  # another gateway created the row at the same moment
        await session.rollback()
        return await _put(session, ref, version, user_id)


async def _put(
    session: AsyncSession, ref: VersionRef, version: int, user_id: int | None
) -> Desired:
    model_id = ref.model_id(version)
    row = await session.get(ModelDeployment, model_id)
    if row is None:
        row = ModelDeployment(model_id=model_id, base=ref.base, name=ref.name, version=version)
        row.deployed_at = utcnow()
        session.add(row)
    row.registered = ref.registered
    row.request_id = uuid.uuid4().hex
    row.deployed_by = user_id
    row.error = None
    await session.commit()
    return _of(row)


async def remove(session: AsyncSession, model_ids: list[str]) -> None:
    """Undeploy: the rows and any split to them."""
    if not model_ids:
        return
    await session.execute(delete(ModelDeployment).where(ModelDeployment.model_id.in_(model_ids)))
    await session.execute(delete(ModelSplit).where(ModelSplit.to_model.in_(model_ids)))
    await session.commit()


async def fail(session: AsyncSession, model_id: str, request_id: str, error: str) -> None:
    """Record why the deploy ``request_id`` could not be served (not a newer one's row)."""
    await session.execute(
        update(ModelDeployment)
        .where(ModelDeployment.model_id == model_id, ModelDeployment.request_id == request_id)
        .values(error=error[:MAX_ERROR_CHARS])
    )
    await session.commit()


async def splits(session: AsyncSession) -> dict[str, Split]:
    found = await session.scalars(select(ModelSplit).order_by(ModelSplit.base))
    return {row.base: Split(row.base, row.to_model, row.percent) for row in found}


async def set_split(session: AsyncSession, chosen: Split) -> None:
    """Create, change or (percent 0) remove the split of ``chosen.base``."""
    row = await session.get(ModelSplit, chosen.base)
    if chosen.percent == 0:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(ModelSplit(base=chosen.base, to_model=chosen.to, percent=chosen.percent))
    else:
        row.to_model, row.percent, row.updated_at = chosen.to, chosen.percent, utcnow()
    await session.commit()


class DesiredSource(Protocol):
    """Where the reconciler reads the desired state and reports failures (the database;
    tests give fakes)."""

    async def load(self) -> tuple[list[Desired], dict[str, Split]]: ...

    async def fail(self, model_id: str, request_id: str, error: str) -> None: ...


class DbDesired:
    def __init__(self, sessionmaker: Callable[[], AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def load(self) -> tuple[list[Desired], dict[str, Split]]:
        async with self._sessionmaker() as session:
            return await rows(session), await splits(session)

    async def fail(self, model_id: str, request_id: str, error: str) -> None:
        async with self._sessionmaker() as session:
            await fail(session, model_id, request_id, error)
