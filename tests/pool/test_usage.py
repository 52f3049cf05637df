"""Usage from leases: weighted by fraction, split at month boundaries, peaks, crashes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.pool import Lease, PoolInputError, compute_usage, month_bounds, month_key
from tether.pool._usage import team_month_device_seconds

from ._helpers import GiB


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def lease(lid: str, start: float, end: float | None, *, fraction: float = 0.5, devices: int = 1,
          team: str = "ml", user: str = "ada", mem: int = 8 * GiB,
          beat: float | None = None) -> Lease:  # fmt: skip
    return Lease(
        id=lid,
        node="n",
        device_ids=tuple(f"d{i}" for i in range(devices)),
        fraction=fraction,
        memory_bytes=mem,
        team=team,
        user=user,
        start=start,
        last_heartbeat=beat if beat is not None else (end if end is not None else start),
        end=end,
        end_reason="released" if end is not None else None,
    )


def test_month_helpers() -> None:
    assert month_bounds(ts(2026, 12, 31, 23, 59)) == (ts(2026, 12, 1), ts(2027, 1, 1))
    assert month_key(ts(2027, 2, 28, 12)) == "2027-02"


def test_device_seconds_weighted_by_fraction_and_devices() -> None:
    t = ts(2027, 1, 10)
    rows = compute_usage(
        [lease("a", t, t + 3600, fraction=0.5), lease("b", t, t + 3600, fraction=1.0, devices=2)],
        now=t + 7200,
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row.team, row.user, row.month) == ("ml", "ada", "2027-01")
    assert row.device_seconds == pytest.approx(1800 + 7200)
    assert row.device_hours == pytest.approx(2.5)
    assert row.memory_gib_seconds == pytest.approx(8 * 3600 + 16 * 3600)
    assert row.sessions == 2
    assert row.peak_share == 2.5


def test_lease_across_a_month_boundary_is_split() -> None:
    start, end = ts(2027, 1, 31, 23), ts(2027, 2, 1, 2)
    rows = compute_usage([lease("a", start, end, fraction=1.0)], now=end)
    assert [(r.month, r.device_seconds, r.sessions) for r in rows] == [
        ("2027-01", 3600.0, 1),
        ("2027-02", 7200.0, 0),
    ]
    assert [r.peak_share for r in rows] == [1.0, 1.0]
    only_feb = compute_usage([lease("a", start, end, fraction=1.0)], now=end, months=["2027-02"])
    assert [r.month for r in only_feb] == ["2027-02"]


def test_open_leases_count_to_now_or_to_last_heartbeat_after_a_crash() -> None:
    t = ts(2027, 1, 10)
    open_lease = lease("a", t, None, fraction=1.0, beat=t + 600)
    assert compute_usage([open_lease], now=t + 3600)[0].device_seconds == 3600
    assert compute_usage([open_lease], now=t + 3600, crashed=True)[0].device_seconds == 600


def test_peak_concurrent_share_does_not_double_count_back_to_back_leases() -> None:
    t = ts(2027, 1, 10)
    leases = [
        lease("a", t, t + 100, fraction=0.5),
        lease("b", t + 100, t + 200, fraction=0.5),  # starts as a ends
        lease("c", t + 50, t + 150, fraction=0.25, user="bob"),
    ]
    by_team = compute_usage(leases, now=t + 300, group_by=("team",))
    assert len(by_team) == 1 and by_team[0].peak_share == 0.75
    assert by_team[0].user is None and by_team[0].month is None
    by_user = compute_usage(leases, now=t + 300, group_by=("team", "user"))
    assert [(r.user, r.peak_share, r.sessions) for r in by_user] == [
        ("ada", 0.5, 2),
        ("bob", 0.25, 1),
    ]


def test_grouping_is_validated() -> None:
    with pytest.raises(PoolInputError, match="grouped by"):
        compute_usage([], now=0, group_by=("node",))  # type: ignore[arg-type]


def test_team_month_device_seconds() -> None:
    start = ts(2027, 1, 31, 23)
    now = ts(2027, 2, 1, 1)
    leases = [lease("a", start, None, fraction=1.0), lease("b", start, None, team="cv")]
    assert team_month_device_seconds(leases, "ml", now=now) == 3600
