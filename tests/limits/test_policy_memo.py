"""Resolved limit policies are remembered per (role, overrides) and forgotten with the roles."""

from __future__ import annotations

from chatgate.auth.identity import Identity
from chatgate.limits import admin
from chatgate.limits.service import Admission
from tests.helpers import Gateway


def member(limits: dict[str, object] | None = None, **extra: object) -> Identity:
    return Identity(user_id=1, username="m", role="user", limits=dict(limits or {}), **extra)  # type: ignore[arg-type]


async def test_same_overrides_share_one_policy(gateway: Gateway) -> None:
    limiter = gateway.state.limits
    first = await limiter.subjects(member({"requests_per_minute": 5}))
    second = await limiter.subjects(member({"requests_per_minute": 5}))
    other = await limiter.subjects(member({"requests_per_minute": 6}))
    assert first[0].policy is second[0].policy
    assert first[0].policy.requests_per_minute == 5
    assert other[0].policy.requests_per_minute == 6


async def test_role_change_reaches_remembered_policies(gateway: Gateway) -> None:
    limiter = gateway.state.limits
    before = (await limiter.subjects(member()))[0].policy
    async with gateway.state.sessionmaker() as db:
        await admin.set_role_limits(db, "user", {"tokens_per_minute": 777})
    limiter.invalidate_roles()
    try:
        after = (await limiter.subjects(member()))[0].policy
        assert before.tokens_per_minute != 777 and after.tokens_per_minute == 777
    finally:
        async with gateway.state.sessionmaker() as db:
            await admin.set_role_limits(db, "user", {"tokens_per_minute": None})
        limiter.invalidate_roles()


async def test_unhashable_overrides_still_resolve(gateway: Gateway) -> None:
    identity = member({"requests_per_minute": 3, "note": ["not", "a", "limit"]})
    subjects = await gateway.state.limits.subjects(identity)
    assert subjects[0].policy.requests_per_minute == 3


async def test_key_policy_is_remembered_too(gateway: Gateway) -> None:
    identity = member(api_key_id=9, key_limits={"concurrent_streams": 2})
    first = await gateway.state.limits.subjects(identity)
    second = await gateway.state.limits.subjects(identity)
    assert first[1].policy is second[1].policy and first[1].policy.concurrent_streams == 2


async def test_finishing_an_empty_admission_starts_no_task(gateway: Gateway) -> None:
    limiter = gateway.state.limits
    limiter.finish_nowait(Admission(), 100)
    assert not limiter._pending
