"""Which of the client's environment variables its worker sees.

Frameworks read some settings from the environment at call time, in the
worker (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for ``torch.load`` of a tutorial
written before torch 2.6). The client sends those of its variables that only
tune the framework (``TORCH_*``, ``PYTORCH_*``); anything that could choose
devices, memory or the process's own setup (``CUDA_VISIBLE_DEVICES``, allocator
settings, ``LD_*``, ``PYTHON*``) is never sent, and a variable the acceptor set
for the slice always wins. Both ends apply the same rule: the worker does not
trust the client's filtering.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PREFIXES = ("TORCH_", "PYTORCH_")
_NEVER = ("CUDA", "HIP", "ROCM", "ROCR", "DEVICE", "VISIBLE", "ALLOC", "MEMORY", "NCCL")
#: At most this many variables, of at most this many bytes each, travel.
MAX_VARS = 64
MAX_LEN = 4096


def forwarded(environ: Mapping[Any, Any]) -> dict[str, str]:
    """The variables of ``environ`` a worker may take from its client (which
    may be anything a peer sent: non-strings are dropped)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if len(out) >= MAX_VARS:
            break
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if not name.startswith(_PREFIXES) or any(word in name for word in _NEVER):
            continue
        if len(name) + len(value) > MAX_LEN or "\0" in name + value:
            continue
        out[name] = value
    return out
