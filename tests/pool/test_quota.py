"""Quota decisions name the limit, the use and what is left."""

from __future__ import annotations

from tether.pool import SHARE_SCALE, Quota, TeamUse, check_quota

from ._helpers import GiB


def check(quota: Quota | None, use: TeamUse, share: float = 0.0, memory: int = 0):  # type: ignore[no-untyped-def]
    return check_quota(
        quota, use, request_share_units=round(share * SHARE_SCALE), request_memory_bytes=memory
    )


def test_no_quota_allows_anything() -> None:
    d = check(None, TeamUse(team="ml", share_units=10**9), share=1)
    assert d.allowed and d.limit is None


def test_share_limit_message_names_use_limit_and_excess() -> None:
    d = check(Quota(team="ml", max_share=2.0), TeamUse(team="ml", share_units=15000), share=0.75)
    assert not d.allowed
    assert d.message == "team ml: concurrent share 1.50 of 2.00 used, request 0.75 exceeds by 0.25"
    assert (d.limit, d.used, d.limit_value, d.requested, d.left) == (
        "max_share", 1.5, 2.0, 0.75, 0.5,
    )  # fmt: skip
    assert not d.monthly


def test_exactly_filling_the_share_limit_is_allowed() -> None:
    q = Quota(team="ml", max_share=1.0)
    assert check(q, TeamUse(team="ml", share_units=7500), share=0.25).allowed
    third = round(SHARE_SCALE / 3)
    assert check(q, TeamUse(team="ml", share_units=2 * third), share=1 / 3).allowed


def test_memory_limit() -> None:
    q = Quota(team="ml", max_memory_bytes=64 * GiB)
    d = check(q, TeamUse(team="ml", memory_bytes=60 * GiB), memory=8 * GiB)
    assert not d.allowed
    assert (
        d.message == "team ml: concurrent memory 60GiB of 64GiB used, request 8GiB exceeds by 4GiB"
    )
    assert d.left == 4 * GiB
    assert check(q, TeamUse(team="ml", memory_bytes=56 * GiB), memory=8 * GiB).allowed


def test_monthly_device_hours() -> None:
    q = Quota(team="ml", max_device_hours_per_month=10)
    assert check(q, TeamUse(team="ml", month_device_seconds=9.5 * 3600), share=1).allowed
    d = check(q, TeamUse(team="ml", month_device_seconds=10 * 3600), share=0.1)
    assert not d.allowed and d.monthly
    assert d.message == (
        "team ml: device-hours this month 10.00 of 10.00 used, none left until the month ends (UTC)"
    )


def test_limits_are_checked_in_a_fixed_order() -> None:
    q = Quota(team="ml", max_share=1, max_memory_bytes=GiB, max_device_hours_per_month=0)
    assert (
        check(q, TeamUse(team="ml"), share=2, memory=2 * GiB).limit == "max_device_hours_per_month"
    )
    q = Quota(team="ml", max_share=1, max_memory_bytes=GiB)
    assert check(q, TeamUse(team="ml"), share=2, memory=2 * GiB).limit == "max_share"


def test_zero_share_quota_refuses_everything() -> None:
    d = check(Quota(team="ml", max_share=0), TeamUse(team="ml"), share=0.01)
    assert not d.allowed and d.left == 0
