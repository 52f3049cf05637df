"""What the worker sends when the client starts iterating a remote object (ITER).

The reply is ``(iterator, left, items)``, or ``(iterator, left, items, True, rows)``
for a checked snapshot:

* items fixed when iteration starts (a tensor's rows, a tuple's items, a range) come
  all at once, up to :data:`PREFETCH_MAX`: values stay values, other items become
  handles; so do the items of torch's parameter and buffer generators
  (:data:`MEMBER_GENERATORS`: ``model.parameters()``), collected here;
* an ndarray's items can change under the loop (the body may write to the array):
  they come as a *checked snapshot*, which the client uses only while it has sent
  nothing that may change an array, re-reading items after that; a small array
  iterated by rows comes with its values (``rows``: ``acceptor/_snapshot.array_bytes``)
  when the client keeps copies, so reading a row's elements waits for nothing;
* a small one-dimensional CPU tensor's items (0-d views) come with their values
  (``(iterator, 0, items, False, values)``): the client answers ``int(i)`` and
  ``i.item()`` of them while it has sent nothing that may change the tensor
  (``client/_itemvalues.py``);
* otherwise, when the number of items left is known for sure, ``left``: the client
  fetches them pipelined; else None, one round trip an item.
"""

from __future__ import annotations

import itertools
import os
import sys
import types
from typing import Any, Final

from tether.acceptor._codec import exact_length
from tether.acceptor._snapshot import array_bytes

#: Iterators whose items are fixed when iteration starts.
SNAPSHOT_ITERATORS: Final = frozenset(
    {"tuple_iterator", "range_iterator", "longrange_iterator", "str_ascii_iterator",
     "str_iterator", "bytes_iterator"}
)  # fmt: skip
#: How many items ITER sends at once, at most.
PREFETCH_MAX: Final = 4096
#: An array iterated by rows sends its values with them up to this size (the client's
#: client/_copies.SMALL_BYTES): ``for x in X_train: x[i]`` reads the copy.
ROWS_BYTES: Final = 16 << 10
#: torch.nn.Module's generators of its parameters and buffers, in torch's module.py.
#: Their items are fixed unless the loop adds or replaces a parameter of a module not
#: reached yet; the module tree changed under ``named_modules()`` (as adapters are put
#: in) is not, so those generators go item by item.
MEMBER_GENERATORS: Final = frozenset(
    {"Module.parameters", "Module.named_parameters", "Module.buffers", "Module.named_buffers"}
)
_MODULE_FILE: Final = os.path.join("torch", "nn", "modules", "module.py")


def start(target: Any, *, with_rows: bool) -> tuple[Any, ...]:
    """The ITER reply for ``target`` (see the module docstring); ``with_rows``: the
    client keeps copies of arrays."""
    it = iter(target)
    if type(target).__name__ == "ndarray" and type(target).__module__ == "numpy":
        size = len(target)
        if size <= PREFETCH_MAX:
            rows = array_bytes(target, ROWS_BYTES) if with_rows and target.ndim > 1 else None
            return (it, size, list(target), True, rows)
    if type(it) is types.GeneratorType and is_member_generator(it.gi_code):
        items = list(itertools.islice(it, PREFETCH_MAX + 1))
        if len(items) <= PREFETCH_MAX:  # model.parameters(): one reply
            return (it, 0, items)
        return (itertools.chain(items, it), None, None)
    n = exact_length(it)
    if n is not None and n <= PREFETCH_MAX and type(it).__name__ in SNAPSHOT_ITERATORS:
        values = _values(target)
        if values is not None:
            return (it, 0, list(it), False, values)
        return (it, 0, list(it))
    return (it, n, None)


def is_member_generator(code: types.CodeType) -> bool:
    """True for the code of one of torch's :data:`MEMBER_GENERATORS`."""
    return code.co_qualname in MEMBER_GENERATORS and code.co_filename.endswith(_MODULE_FILE)


def _values(target: Any) -> list[Any] | None:
    """A small plain 1-D tensor's values as Python numbers (its items' ``item()``), or
    None: other objects, subclasses, complex, quantized and sparse tensors, and tensors
    off the CPU (reading them would wait for the device, which the loop may not need)."""
    torch = sys.modules.get("torch")
    if torch is None or type(target) is not torch.Tensor or target.dim() != 1:
        return None
    if target.is_complex() or target.is_quantized or target.layout is not torch.strided:
        return None
    if target.device.type != "cpu":
        return None
    values: list[Any] = target.tolist()
    return values
