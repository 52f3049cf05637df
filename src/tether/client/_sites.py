"""Call sites: the keys under which prediction learns what calls return.

A site groups the calls that return results of one shape. Too coarse and a
site mispredicts (then it is never pipelined again); too fine and every call
is a first call, which is synchronous. The keys, by the kind of call:

=====================  ===============================================  ==================
call                   key                                              why
=====================  ===============================================  ==================
``a + b``, ``x[i]``    ``("o", fn, kind of each operand)``              operators decide
                       (``+ index`` for ``[int or str]`` of a           on operand types;
                       container whose items differ in class)           ``seq[1]`` says
                                                                        nothing of
                                                                        ``seq[2]``
``f(*args)``           ``("c", handle of f, kinds of args, keywords)``  one function, the
                                                                        class its
                                                                        arguments decide
``Cls(*args)``         ``("c", class handle)``                          a class makes its
                                                                        instances
``obj(*args)``         ``("ct", type of obj, mode, arg kinds,           a module's call,
                       keywords)`` (mode: the last ``train()`` or       the class its
                       ``eval()`` of obj, else of any module)           arguments and its
                                                                        mode decide
                                                                        (``model(x)``,
                                                                        ``model(x, y)``;
                                                                        ``out, aux`` when
                                                                        training)
``obj.m(*args)``       ``("m", type of obj, "m")``                      methods by type
``x.T``, ``x.real``    ``("a", type of x, name)`` (arrays' and          views of an array
                       tensors' :data:`VIEW_ATTRS` only)                are arrays
``next(it)``           ``("n", type of it)`` (library iterators only)   a DataLoader's
                                                                        batches alike
=====================  ===============================================  ==================

A *kind* is a proxy's remote type id, else the local type. Pure functions of
the call and the session's type descriptors.
"""

from __future__ import annotations

import operator
from typing import Any, Final

from tether.client._predict import HandleOf, ItemsOf, Template
from tether.client._proxy import RemoteObject, RemoteType
from tether.wire._ops import NONE, TypeDesc

#: Remote classes whose items are all of one class: indexing them is one site.
_HOMOGENEOUS: Final = frozenset(
    {("torch", "Tensor"), ("numpy", "ndarray"), ("torch.nn.parameter", "Parameter")}
)
_FUNCTION_TYPES: Final = frozenset(
    {"builtin_function_or_method", "function", "method", "method-wrapper",
     "cython_function_or_method", "fused_cython_function", "_lru_cache_wrapper",
     "partial", "wrapper_descriptor", "method_descriptor", "classmethod_descriptor",
     "_ArrayFunctionDispatcher", "ufunc"}  # numpy's functions and ufuncs
)  # fmt: skip
_GETITEM: Final = operator.getitem

#: Attributes of arrays and tensors that are always an array or tensor (views and
#: parts of it). Other attribute reads wait: ``p.grad`` is None on some tensors
#: and a tensor on others, and a module's ``bias`` may be None; a pipelined guess
#: would hand the script a proxy where it tests for None.
VIEW_ATTRS: Final = frozenset({"T", "mT", "H", "mH", "real", "imag", "data"})


def kind(x: Any) -> Any:
    """What a key records of an argument: a proxy's remote type id, else the local type."""
    t = type(x)
    return t._t_tid if type(t) is RemoteType else t


def is_function(desc: TypeDesc | None) -> bool:
    return desc is not None and desc.qualname in _FUNCTION_TYPES


def operator_site(fn: Any, args: tuple[Any, ...], types: dict[int, TypeDesc]) -> tuple[Any, ...]:
    if len(args) == 2:  # a binary operator, the common case: no map() to build
        a, b = args
        ta, tb = type(a), type(b)
        key: tuple[Any, ...] = (
            "o",
            fn,
            ta._t_tid if type(ta) is RemoteType else ta,
            tb._t_tid if type(tb) is RemoteType else tb,
        )
    else:
        key = ("o", fn, *map(kind, args))
    if fn is _GETITEM and type(args[1]) in (int, str):
        # Containers hold objects of different classes (nn.Sequential): the
        # class of seq[1] says nothing about seq[2]. Each index learns alone,
        # except in arrays and tensors, whose items are all alike.
        desc = types.get(key[2]) if type(key[2]) is int else None
        if desc is None or (desc.module, desc.qualname) not in _HOMOGENEOUS:
            key += (args[1],)
    return key


def call_site(
    target: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    types: dict[int, TypeDesc],
    mode: bool | None = None,
) -> tuple[Any, ...]:
    """The site of ``target(*args, **kwargs)``; ``mode``: the last ``train()`` or
    ``eval()`` the script gave ``target`` (or any module), for calls of objects."""
    if isinstance(target, RemoteType):
        cid = target.__dict__.get("_t_cid")
        return ("c", cid) if cid is not None else ("ct-class", target._t_tid)
    tid = type(target)._t_tid
    if not is_function(types.get(tid)):
        if kwargs:
            return ("ct", tid, mode, *map(kind, args), *kwargs)
        return ("ct", tid, mode, *map(kind, args))
    # One function, results of the class its arguments decide (torch.fx's
    # map_arg: a tuple for a tuple, a dict for a dict), and of the keywords
    # given (numpy's random.choice(a) and choice(a, size=n)).
    if kwargs:
        return ("c", target._t_id, *map(kind, args), *kwargs)
    return ("c", target._t_id, *map(kind, args))


def attr_site(obj: Any, name: str, types: dict[int, TypeDesc]) -> tuple[Any, ...] | None:
    """The site of ``obj.name``, or None: read it synchronously."""
    if name not in VIEW_ATTRS:
        return None
    tid = type(obj)._t_tid
    desc = types.get(tid)
    if desc is None or (desc.module, desc.qualname) not in _HOMOGENEOUS:
        return None
    return ("a", tid, name)


def next_site(it: Any, types: dict[int, TypeDesc]) -> tuple[Any, ...] | None:
    """The site of ``next(it)``, or None: fetch each item synchronously."""
    tid = type(it)._t_tid
    desc = types.get(tid)
    # Items of builtin iterators and generators (a list's items, modules())
    # vary in class: fetch each one. Iterators of library types (DataLoader)
    # yield the same structure every time and are pipelined.
    if desc is None or desc.module == "builtins":
        return None
    return ("n", tid)


#: Methods whose tuples are as long as the data make them (``x.split(k)``: one
#: tensor per piece; ``x.nonzero(as_tuple=True)``: one per dimension).
DATA_ARITY_METHODS: Final = frozenset(
    {"split", "chunk", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit",
     "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk",
     "nonzero"}
)  # fmt: skip


def code_arity(key: Any) -> bool:
    """Whether a tuple the site returns has the arity of code, not of data.

    A tuple pipelined at the last call's length would be a tuple of the wrong
    length if it changed, with nothing to put right once the script holds it
    (``x.split(32)`` of the training set, then of the smaller validation set).
    Calling an object (a module: ``out, (h, c) = lstm(x)``; ``logits, loss =
    model(x, y)``), an operator, the next item of an iterator and a method other
    than :data:`DATA_ARITY_METHODS` return what their code builds; a function
    (``torch.split``, ``np.nonzero``) may be one whose arity follows the data, and
    its tuples are not pipelined.
    """
    if type(key[0]) is tuple:  # (site, place): learnt apart by place in the script
        key = key[0]
    tag = key[0]
    if tag == "m":
        return key[2] not in DATA_ARITY_METHODS
    return tag in ("ct", "o", "n")


def template_of(value: Any, tuples: bool = True) -> Template | None:
    """The prediction template of a result, or None if it cannot be predicted;
    ``tuples``: whether a tuple is (see :func:`code_arity`)."""
    if value is None:
        return NONE
    t = type(value)
    if isinstance(value, RemoteObject):
        return HandleOf(t._t_tid)
    # A list's length follows the data (``np.array_split(x, n)``, ``times.tolist()``):
    # a site that returns lists waits, as one whose tuples' arity may change does.
    if t is tuple and tuples and 0 < len(value) <= 16:
        subs = tuple(template_of(v) for v in value)
        if all(s is not None and s is not NONE for s in subs):
            return ItemsOf(False, subs)  # type: ignore[arg-type]
    return None
