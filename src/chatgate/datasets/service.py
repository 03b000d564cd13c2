"""One export, shared by the admin API and ``chatgate dataset export``: resolve the
filter's users, read the rated answers, build and write the dataset."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.datasets import collect, store
from chatgate.datasets.build import build
from chatgate.datasets.filters import DatasetFilter
from chatgate.db.models import User
from chatgate.errors import not_found


async def _check_usernames(db: AsyncSession, flt: DatasetFilter) -> None:
    if not flt.usernames:
        return
    known = set(await db.scalars(select(User.username).where(User.username.in_(flt.usernames))))
    unknown = sorted(set(flt.usernames) - known)
    if unknown:
        raise not_found(f"User '{unknown[0]}'")


async def export(
    db: AsyncSession, data_dir: Path, flt: DatasetFilter, default_opt_in: bool
) -> dict[str, Any]:
    """Export the answers ``flt`` selects into the data dir; the dataset's metadata."""
    await _check_usernames(db, flt)
    answers = await collect.rated_answers(db, flt, default_opt_in)
    opted_out = await collect.count_opted_out(db, flt, default_opt_in)
    # Scrubbing, hashing and writing are CPU and disk work: off the event loop.
    built = await asyncio.to_thread(build, answers, flt.min_chars, flt.holdout)
    built.counts["opted_out"] = opted_out
    filters = {**flt.describe(), "default_opt_in": default_opt_in}
    metadata = store.metadata_of(built, filters)
    await asyncio.to_thread(store.write, data_dir, built, metadata)
    return metadata
