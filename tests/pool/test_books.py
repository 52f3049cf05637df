"""The books: open share and memory, this month's device-seconds, quota refusals."""

from __future__ import annotations

from tether.pool import Lease, Quota
from tether.pool._books import TeamBooks, quota_refusal
from tether.pool._usage import month_bounds

from ._helpers import T0, GiB, req

HOUR = 3600.0


def lease(lid: str, start: float, *, team: str = "ml", n: int = 1, fraction: float = 0.5) -> Lease:
    return Lease(
        id=lid,
        node="a",
        device_ids=tuple(f"cuda:{i}" for i in range(n)),
        fraction=fraction,
        memory_bytes=GiB,
        team=team,
        user="ada",
        start=start,
        last_heartbeat=start,
    )


def test_open_leases_count_share_memory_and_time_up_to_now() -> None:
    books = TeamBooks()
    books.roll_month(T0)
    books.count_open(lease("l1", T0, n=2), +1)
    use = books.use("ml", T0 + HOUR)
    assert (use.share_units, use.memory_bytes) == (10_000, 2 * GiB)
    assert use.month_device_seconds == HOUR  # 2 devices x 0.5 for an hour
    assert books.share == {"ml": 10_000}
    assert books.use("other", T0).share_units == 0


def test_a_closed_lease_counts_only_up_to_its_end() -> None:
    books = TeamBooks()
    books.roll_month(T0)
    held = lease("l1", T0)
    books.count_open(held, +1)
    books.count_open(held, -1)
    books.count_closed(held, T0 + HOUR)
    use = books.use("ml", T0 + 5 * HOUR)
    assert use.share_units == 0 and use.memory_bytes == 0
    assert use.month_device_seconds == 0.5 * HOUR


def test_a_new_month_starts_spending_again_but_keeps_open_leases() -> None:
    books = TeamBooks()
    books.roll_month(T0)
    books.count_open(lease("l1", T0), +1)
    _, month_end = month_bounds(T0)
    books.roll_month(month_end)
    use = books.use("ml", month_end + HOUR)
    assert use.share_units == 5_000
    assert use.month_device_seconds == 0.5 * HOUR  # counted from the new month's start


def test_a_request_over_a_concurrent_limit_on_its_own_is_refused_for_good() -> None:
    books = TeamBooks()
    assert books.never(req("r1", fraction=1.0)) is None  # no quota: unlimited
    books.set_quota(Quota(team="ml", max_share=0.5))
    assert books.never(req("r2", fraction=0.5)) is None
    decision = books.never(req("r3", count=1))
    assert decision is not None and decision.limit == "max_share"
    refused = quota_refusal(req("r3", count=1), decision)
    assert refused.code == "quota" and refused.limit == "max_share"
    assert refused.message.endswith("(the request alone is over the team's limit)")
    assert books.quotas() == [Quota(team="ml", max_share=0.5)]
