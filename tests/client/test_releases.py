"""Where released handles go in a batch of pipelined calls."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tether.client._releases import interleave_releases
from tether.wire._ops import RELEASE_TAG, frame_entry, unpack_batch, unpack_ids


def _layout(out: list[bytes]) -> tuple[list[bytes], dict[int, int]]:
    """The calls in order, and for each released id how many calls precede it
    (``out`` is a batch's entries, each behind its length, as the wire has them)."""
    calls: list[bytes] = []
    where: dict[int, int] = {}
    for entry in unpack_batch(b"".join(out)):
        if entry[:1] == RELEASE_TAG:
            for hid in unpack_ids(entry[1:]):
                assert hid not in where, "released twice"
                where[hid] = len(calls)
        else:
            calls.append(entry)
    return calls, where


@given(
    st.integers(1, 40),
    st.lists(st.integers(0, 40), max_size=60),
    st.integers(1, 8),
)
def test_each_release_follows_the_calls_before_it_and_comes_soon(
    n: int, marks: list[int], every: int
) -> None:
    metas = [b"\x80call%d" % i for i in range(n)]
    at = sorted(min(m, n) for m in marks)
    ids = list(range(1000, 1000 + len(at)))
    calls, where = _layout(interleave_releases(list(map(frame_entry, metas)), ids, at, every))
    assert calls == metas
    assert sorted(where) == ids
    for hid, mark in zip(ids, at, strict=True):
        assert mark <= where[hid] <= min(mark + every - 1, n)
    # A few entries, not one per release: at most one per group of calls, plus the end.
    assert len(interleave_releases(metas, ids, at, every)) - n <= -(-n // every) + 1


def test_a_loop_that_frees_a_temporary_per_call_adds_a_few_entries() -> None:
    metas = [frame_entry(b"\x80c")] * 16
    at = list(range(16))  # each call's proxy freed the previous result
    out = interleave_releases(metas, list(range(16)), at, 4)
    assert len(out) - 16 == 5  # before calls 0, 4, 8 and 12, and after the last


def test_mismatched_bookkeeping_puts_every_release_last() -> None:
    calls = [frame_entry(b"\x80a"), frame_entry(b"\x80b")]
    out = interleave_releases(calls, [7, 8], [0])
    assert out[:2] == calls and _layout(out) == ([b"\x80a", b"\x80b"], {7: 2, 8: 2})
