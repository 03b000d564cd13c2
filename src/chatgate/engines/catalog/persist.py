"""Model settings that outlive a restart: which models are disabled, which profile is active."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.db.models import ModelSetting


@dataclass(frozen=True)
class StoredModelSettings:
    disabled: frozenset[str]
    active: str | None


async def load(session: AsyncSession) -> StoredModelSettings:
    rows = (await session.scalars(select(ModelSetting))).all()
    active = next((row.model_id for row in rows if row.active), None)
    return StoredModelSettings(frozenset(row.model_id for row in rows if not row.enabled), active)


async def _row(session: AsyncSession, model_id: str) -> ModelSetting:
    row = await session.get(ModelSetting, model_id)
    if row is None:
        row = ModelSetting(model_id=model_id, enabled=True, active=False)
        session.add(row)
    return row


async def save_enabled(session: AsyncSession, model_id: str, enabled: bool) -> None:
    row = await _row(session, model_id)
    row.enabled = enabled
    await session.commit()


async def save_active(session: AsyncSession, model_id: str) -> None:
    """Make ``model_id`` the one active profile (the one ``serve`` starts next time)."""
    await session.execute(
        update(ModelSetting).where(ModelSetting.model_id != model_id).values(active=False)
    )
    row = await _row(session, model_id)
    row.active = True
    await session.commit()
