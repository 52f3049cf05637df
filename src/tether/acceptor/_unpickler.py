"""The worker's unpickler: the client's references resolved to this session's objects."""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class WorkerUnpickler(pickle.Unpickler):
    """Reads what the client pickled (a call, a value, an answer).

    References (the names of :mod:`tether._refs`) resolve through ``refs``, the
    engine's table. Globals are looked up once per session (``resolved``): a
    call names the same few functions over and over, and the import
    machinery's lookup costs more than the rest of decoding a small call.
    """

    def __init__(
        self,
        file: io.BytesIO,
        buffers: Sequence[Any],
        refs: Mapping[str, Callable[..., Any]],
        resolved: dict[tuple[str, str], Any],
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._refs = refs
        self._resolved = resolved

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(module, name)
            self._resolved[key] = found
        return found

    def _resolve(self, module: str, name: str) -> Any:
        if module != "tether._refs":
            return super().find_class(module, name)
        try:
            return self._refs[name]
        except KeyError:
            raise pickle.UnpicklingError(f"unknown reference kind {name!r}") from None


def array_from(buffer: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    """The array the client sent as ``_refs.array``: what numpy's own unpickling of
    an out-of-band array makes (a view of the received buffer)."""
    import numpy

    return numpy.frombuffer(buffer, dtype=dtype).reshape(shape)


def exception_class(lineage: Sequence[tuple[str, str]]) -> type:
    """The class an exception's lineage names first (module, qualname)."""
    module, qualname = lineage[0]
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]
