"""Where released handles go in a batch of pipelined calls.

A proxy that dies (``__del__``) queues its handle id with the number of calls
queued so far; :func:`interleave_releases` puts each id in the next batch right
after the calls that may still use it, as Python frees objects locally.
"""

from __future__ import annotations

import bisect
from typing import Final

from tether.wire._ops import RELEASE_TAG, frame_entry, pack_ids

RELEASE_EVERY: Final = 4  # in a batch, released handles are grouped by this many calls


def interleave_releases(
    metas: list[bytes], ids: list[int], at: list[int], every: int = RELEASE_EVERY
) -> list[bytes]:
    """A batch of entries (:func:`~tether.wire._ops.frame_entry`) with release
    entries for ``ids`` in it.

    ``at[i]`` is how many of the calls were queued when ``ids[i]``'s proxy died;
    its release goes after those calls (never earlier: they may use it) and,
    grouped by every ``every`` calls, at most ``every - 1`` calls later. So the
    worker frees the previous step's tensors while it runs this one, as Python
    does locally; with all releases at the end it held two steps' activations
    at once. Grouping keeps a loop whose every call frees a temporary at a few
    entries per batch.
    """
    n = len(metas)
    if len(at) != len(ids):  # bookkeeping that does not add up: all last is always safe
        return [*metas, frame_entry(RELEASE_TAG + pack_ids(ids))] if ids else list(metas)
    # ``at`` never decreases: the ids released when the batch held at most b
    # calls are a prefix, and may go before call b.
    out: list[bytes] = []
    j = 0
    for b in range(0, n, every):
        k = bisect.bisect_right(at, b, j)
        if k > j:
            out.append(frame_entry(RELEASE_TAG + pack_ids(ids[j:k])))
            j = k
        out += metas[b : b + every]
    if j < len(ids):
        out.append(frame_entry(RELEASE_TAG + pack_ids(ids[j:])))
    return out
