"""Resources the lifespan owns, reachable from handlers through dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chatgate.auth.cache import IdentityCache
from chatgate.auth.tokens import TokenCodec
from chatgate.chat.generations import GenerationManager
from chatgate.db.health import DatabaseHealth
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.failover import Upstreams
from chatgate.engines.upstream.registry import ModelRegistry
from chatgate.finetune.split import SplitTable
from chatgate.fleet import FleetEvents
from chatgate.limits.service import RateLimiter
from chatgate.observability.metrics import Metrics
from chatgate.settings import Settings
from chatgate.usage.outbox import Outbox
from chatgate.usage.service import UsageWriter


@dataclass
class AppState:
    settings: Settings
    db: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    engines: EngineClient
    registry: ModelRegistry
    usage: UsageWriter
    generations: GenerationManager
    tokens: TokenCodec
    metrics: Metrics
    limits: RateLimiter
    manager: EngineManager
    upstreams: Upstreams  # the one owner of engine requests (admission, routing, release)
    db_health: DatabaseHealth  # is the database reachable (one log line per outage)
    outbox: Outbox  # what the database cannot take now: journaled, replayed later
    redis: Redis | None = None
    fleet: FleetEvents | None = None  # with Redis: changes told to every gateway
    # API-key identities for a few seconds: one per app, so per worker process.
    identity_cache: IdentityCache = field(default_factory=IdentityCache)
    splits: SplitTable | None = None  # A/B splits of the web chat (finetune/split.py)
