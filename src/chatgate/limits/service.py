"""Admission control: requests/min, tokens/min, concurrent streams, daily/monthly budgets.

A request through an API key must pass both its user's limits and the key's own.
Tokens are charged once the usage row is known (prompt + completion); budgets are
summed from the usage table itself, so they count calendar days and months exactly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from limits import RateLimitItemPerMinute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.auth.identity import Identity
from chatgate.db.models import RequestLog, RoleLimits
from chatgate.errors import APIError
from chatgate.limits.policy import DEFAULT_ROLE_LIMITS, LimitPolicy, QueuePriority
from chatgate.limits.store import LimitStore, Slot
from chatgate.observability.metrics import Metrics

log = logging.getLogger("chatgate.limits")

ROLE_CACHE_SECONDS = 10.0
POLICY_MEMO_MAX = 4096


@dataclass(frozen=True)
class LoginPolicy:
    failures_per_user: int = 10
    failures_per_ip: int = 50
    window_minutes: int = 15


@dataclass(frozen=True)
class Subject:
    key: str  # "user:12" | "key:5"
    policy: LimitPolicy
    column: Any  # the usage column that budgets sum over
    ident: int


@dataclass
class Admission:
    headers: dict[str, str] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    token_windows: list[tuple[str, int]] = field(default_factory=list)  # (key, tokens/min)
    # The request's share of a busy engine and its queue class (the key's setting, else
    # the user's, else the role's; no class: the route decides).
    weight: float = 1.0
    priority: QueuePriority | None = None


def period_start(period: str, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(period: str, now: datetime) -> datetime:
    start = period_start(period, now)
    if period == "day":
        return datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


class RateLimiter:
    def __init__(
        self,
        store: LimitStore,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        role_defaults: dict[str, dict[str, Any]] | None = None,
        login: LoginPolicy | None = None,
    ) -> None:
        self.store = store
        self._login = login or LoginPolicy()
        self._sessionmaker = sessionmaker
        self.metrics = metrics
        self._role_defaults = role_defaults if role_defaults is not None else DEFAULT_ROLE_LIMITS
        self._role_overrides: dict[str, dict[str, Any]] = {}
        self._roles_loaded_at = -math.inf
        self._pending: set[asyncio.Task[None]] = set()
        # Resolved policies by (role, overrides): building one validates a pydantic model,
        # and the same few combinations come with every request. Cleared with the roles.
        self._policies: dict[tuple[object, ...], LimitPolicy] = {}
        self.logins = LoginThrottle(self, self._login)

    def invalidate_roles(self) -> None:
        self._roles_loaded_at = -math.inf

    async def role_policy(self, role: str) -> LimitPolicy:
        if time.monotonic() - self._roles_loaded_at > ROLE_CACHE_SECONDS:
            async with self._sessionmaker() as db:
                rows = (await db.scalars(select(RoleLimits))).all()
            self._role_overrides = {row.role: dict(row.limits) for row in rows}
            self._roles_loaded_at = time.monotonic()
            self._policies.clear()
        return self._memo(("role", role), lambda: self._build_role_policy(role))

    def _build_role_policy(self, role: str) -> LimitPolicy:
        base = LimitPolicy().overlay(self._role_defaults.get(role))
        return base.overlay(self._role_overrides.get(role))

    def _memo(self, key: tuple[object, ...], build: Callable[[], LimitPolicy]) -> LimitPolicy:
        try:
            found = self._policies.get(key)
        except TypeError:  # an unhashable override value: not worth remembering
            return build()
        if found is None:
            if len(self._policies) >= POLICY_MEMO_MAX:
                self._policies.clear()
            found = self._policies[key] = build()
        return found

    async def subjects(self, identity: Identity) -> list[Subject]:
        role_policy = await self.role_policy(identity.role)
        user_policy = self._memo(
            ("user", identity.role, *_frozen(identity.limits)),
            lambda: role_policy.overlay(identity.limits),
        )
        found = [
            Subject(f"user:{identity.user_id}", user_policy, RequestLog.user_id, identity.user_id)
        ]
        if identity.api_key_id is not None and identity.key_limits:
            key_policy = self._memo(
                ("key", *_frozen(identity.key_limits)),
                lambda: LimitPolicy().overlay(identity.key_limits),
            )
            found.append(
                Subject(
                    f"key:{identity.api_key_id}",
                    key_policy,
                    RequestLog.api_key_id,
                    identity.api_key_id,
                )
            )
        return found

    async def admit(self, identity: Identity) -> Admission:
        """Pass every limit or raise 429; the caller releases the admission when done."""
        admission = Admission()
        try:
            for subject in await self.subjects(identity):  # the user's, then the key's
                admission.weight = subject.policy.queue_weight or admission.weight
                admission.priority = subject.policy.queue_priority or admission.priority
                await self._check_rates(subject, admission)
                await self._check_budgets(subject)
                await self._take_slot(subject, admission)
        except APIError:
            await self.finish(admission, 0)
            raise
        return admission

    async def finish(self, admission: Admission, tokens: int) -> None:
        """Free the stream slots and charge the request's tokens to its tokens/min windows."""
        slots, admission.slots = admission.slots, []
        for slot in slots:
            await self.store.release_slot(slot)
        windows, admission.token_windows = admission.token_windows, []
        for key, limit in windows if tokens > 0 else []:
            item = RateLimitItemPerMinute(max(limit, 1))
            _, remaining = await self.store.window(item, key)
            # A window holds at most its limit; the overshoot blocks until it slides out.
            if min(tokens, remaining) > 0:
                await self.store.hit(item, key, cost=min(tokens, remaining))

    def finish_nowait(self, admission: Admission, tokens: int) -> None:
        """``finish`` for code that cannot await (a cancelled stream's cleanup)."""
        if not admission.slots and not admission.token_windows:
            return  # nothing held, nothing to charge: no task per request for nothing
        task = asyncio.create_task(self.finish(admission, tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _check_rates(self, subject: Subject, admission: Admission) -> None:
        rpm = subject.policy.requests_per_minute
        if rpm is not None:
            item = RateLimitItemPerMinute(max(rpm, 1))
            allowed = rpm > 0 and await self.store.hit(item, subject.key + ":rpm")
            reset, remaining = await self.store.window(item, subject.key + ":rpm")
            headers = _rate_headers(rpm, remaining, reset)
            if not allowed:
                self._reject("requests_per_minute", subject, reset - time.time(), headers)
            if not admission.headers or remaining < int(admission.headers["X-RateLimit-Remaining"]):
                admission.headers = headers
        tpm = subject.policy.tokens_per_minute
        if tpm is not None:
            item = RateLimitItemPerMinute(max(tpm, 1))
            if tpm == 0 or not await self.store.test(item, subject.key + ":tpm"):
                reset, _ = await self.store.window(item, subject.key + ":tpm")
                self._reject("tokens_per_minute", subject, reset - time.time())
            admission.token_windows.append((subject.key + ":tpm", tpm))

    async def _check_budgets(self, subject: Subject) -> None:
        now = datetime.now(UTC)
        for period, budget in (
            ("day", subject.policy.tokens_per_day),
            ("month", subject.policy.tokens_per_month),
        ):
            if budget is None:
                continue
            if await self.tokens_used(subject, period_start(period, now)) >= budget:
                wait = (period_end(period, now) - now).total_seconds()
                self._reject(f"tokens_per_{period}", subject, wait)

    async def tokens_used(self, subject: Subject, since: datetime) -> int:
        total = func.coalesce(func.sum(RequestLog.prompt_tokens + RequestLog.completion_tokens), 0)
        async with self._sessionmaker() as db:
            used = await db.scalar(
                select(total).where(subject.column == subject.ident, RequestLog.created_at >= since)
            )
        return int(used or 0)

    async def _take_slot(self, subject: Subject, admission: Admission) -> None:
        limit = subject.policy.concurrent_streams
        if limit is None:
            return
        slot = await self.store.acquire_slot(subject.key, limit) if limit > 0 else None
        if slot is None:
            self._reject("concurrent_streams", subject, 1)
        else:
            admission.slots.append(slot)

    def _reject(
        self,
        limit: str,
        subject: Subject,
        retry_after: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.metrics.ratelimit_rejections.labels(limit).inc()
        who = "API key" if subject.key.startswith("key:") else "account"
        seconds = max(1, math.ceil(retry_after))
        raise APIError(
            429,
            f"Rate limit reached for this {who}: {limit.replace('_', ' ')}. "
            f"Try again in {seconds} s.",
            "rate_limit_exceeded",
            headers={**(headers or {}), "Retry-After": str(seconds)},
        )


class LoginThrottle:
    """Failed logins per username and per client address (credential stuffing, guessing)."""

    def __init__(self, limiter: RateLimiter, policy: LoginPolicy) -> None:
        self._store = limiter.store
        self._metrics = limiter.metrics
        self._by_user = RateLimitItemPerMinute(policy.failures_per_user, policy.window_minutes)
        self._by_ip = RateLimitItemPerMinute(policy.failures_per_ip, policy.window_minutes)

    def _windows(self, username: str, ip: str) -> list[tuple[RateLimitItemPerMinute, str]]:
        return [(self._by_user, f"login:user:{username.lower()}"), (self._by_ip, f"login:ip:{ip}")]

    async def check(self, username: str, ip: str) -> None:
        for item, key in self._windows(username, ip):
            if not await self._store.test(item, key):
                reset, _ = await self._store.window(item, key)
                self._metrics.ratelimit_rejections.labels("login").inc()
                seconds = max(1, math.ceil(reset - time.time()))
                raise APIError(
                    429,
                    f"Too many failed logins; try again in {seconds} s",
                    "too_many_login_attempts",
                    headers={"Retry-After": str(seconds)},
                )

    async def failed(self, username: str, ip: str) -> None:
        for item, key in self._windows(username, ip):
            await self._store.hit(item, key)

    async def succeeded(self, username: str, ip: str) -> None:
        item, key = self._windows(username, ip)[0]
        await self._store.clear(item, key)


def _frozen(overrides: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(overrides.items()))


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(max(0, math.ceil(reset - time.time()))),
    }
