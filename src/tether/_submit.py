"""``tether.submit``: many runs of one command from Python, one pool group for all.

For notebooks and scripts::

    import tether
    sweep = tether.submit("python train.py --seed {index} --lr {lr}",
                          params={"lr": [0.1, 0.01]}, count=None, gpus=0.25, name="sweep")
    sweep.wait()
    for r in sweep.results():
        print(r.index, r.params, r.state, r.exit_code, r.output)

It is :class:`tether.client._group.GroupRun` (what ``tether submit`` drives),
submitted and started in a background thread. The pool and token come from the
arguments, the environment or the config file, as for ``tether run --pool``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tether._errors import TetherError
from tether.client._group import GroupRun, expand_params
from tether.client._lease import slice_request

__all__ = ["members_from_specs", "members_of", "submit"]


def members_of(
    count: int | None, params: Mapping[str, Sequence[Any]] | None
) -> list[dict[str, str]]:
    """Each member's parameters: the grid of ``params`` (every combination), or
    ``count`` members with none. With both, ``count`` must equal the grid's size.
    Raises ValueError otherwise."""
    specs = [f"{k}={','.join(str(v) for v in values)}" for k, values in (params or {}).items()]
    return members_from_specs(count, specs)


def members_from_specs(count: int | None, specs: Sequence[str]) -> list[dict[str, str]]:
    """:func:`members_of` for ``--param NAME=V1,V2`` strings (the command line's form)."""
    grid = expand_params(specs) if specs else []
    if grid:
        if count is not None and count != len(grid):
            raise ValueError(
                f"count {count} does not match the {len(grid)} combinations of the parameters"
            )
        return grid
    if count is None or count < 1:
        raise ValueError("give a count of members (1 or more) or parameters to sweep")
    return [{} for _ in range(count)]


def submit(
    command: str | Sequence[str],
    *,
    count: int | None = None,
    params: Mapping[str, Sequence[Any]] | None = None,
    gpus: float | None = None,
    memory: str | None = None,
    vendor: str | None = None,
    model: str | None = None,
    team: str | None = None,
    name: str | None = None,
    min_count: int | None = None,
    parallel: int | None = None,
    remote: Sequence[str] = ("torch",),
    out_dir: str | os.PathLike[str] = "tether-groups",
    wait: bool = True,
    queue_timeout_s: float | None = None,
    pool: str | None = None,
    token: str | None = None,
    ca: str | None = None,
) -> GroupRun:
    """Ask the pool for ``count`` slices (or one per combination of ``params``) in one
    group request, and run ``command`` once per member, ``{index}`` and ``{NAME}``
    of each parameter replaced, each member's output in ``out_dir/NAME/INDEX.out``.

    Returns the started run: ``.wait()`` blocks until every member ended and returns
    ``.results()``; ``.cancel()`` stops them all and cancels the group. Raises
    :class:`tether.poolapi._problems.Refused` when the pool refuses the group at once
    (never fits, over quota, or ``wait=False`` and no room now), :class:`TetherError`
    when no pool is configured, ValueError for bad arguments.
    """
    from tether._config import resolve_pool
    from tether.poolapi._client import PoolClient

    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("give the command to run")
    members = members_of(count, params)
    cfg = resolve_pool(pool, token, ca=ca)
    if not cfg.url or not cfg.token:
        raise TetherError(
            "no pool: pass pool= and token=, set TETHER_POOL and TETHER_POOL_TOKEN, or run "
            "`tether up` (it writes the config file)"
        )
    request = slice_request(
        gpus=gpus, memory=memory, vendor=vendor, model=model, team=team, wait=wait,
        queue_timeout_s=queue_timeout_s,
    )  # fmt: skip
    run = GroupRun(
        client=PoolClient(cfg.url.strip(), cfg.token, ca=cfg.ca),
        command=argv,
        request=request,
        members=members,
        name=name or f"group-{os.getpid()}",
        remote=list(remote),
        parallel=parallel,
        out_dir=Path(out_dir),
        min_count=min_count,
        tls_ca=str(cfg.ca) if cfg.ca else None,
    )
    run.submit()
    run.start()
    return run
