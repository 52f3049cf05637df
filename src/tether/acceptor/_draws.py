"""Draws of numpy's global random generator, made ahead for the client.

A script that draws one number at a time from a remoted ``numpy.random``
(``if np.random.random() < rate:`` per character, per step) would wait a round
trip per draw. The client (``client/_draws.py``) asks for a batch instead: the
same function with the same arguments, called ``n`` times here in order, so the
numbers are exactly the ones the single calls would have drawn. Before the
session sends anything else, the client says how many it used; the generator is
put back to its state before the batch and advanced by that many draws, so the
stream the rest of the script sees is the local one.

Only the legacy global generator's (``RandomState``) drawing methods, and only
scalar draws, qualify; anything else is refused (``None``) and called as usual.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

#: RandomState methods that draw numbers and change nothing but the generator.
DRAWING: Final = frozenset(
    {"beta", "binomial", "chisquare", "choice", "exponential", "f", "gamma", "geometric",
     "gumbel", "hypergeometric", "laplace", "logistic", "lognormal", "logseries",
     "negative_binomial", "noncentral_chisquare", "noncentral_f", "normal", "pareto",
     "poisson", "power", "rand", "randint", "randn", "random", "random_integers",
     "random_sample", "rayleigh", "standard_cauchy", "standard_exponential",
     "standard_gamma", "standard_normal", "standard_t", "triangular", "uniform",
     "vonmises", "wald", "weibull", "zipf"}
)  # fmt: skip
_SCALARS: Final = (int, float, bool)
_MOST: Final = 4096  # draws in one batch, whatever the client asks
_tokens = itertools.count(1)
#: The one batch outstanding: token -> (generator, its state before, fn, args, kwargs)
_pending: dict[int, tuple[Any, Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = {}


def prefetch(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], n: int
) -> tuple[int, list[Any]] | None:
    """``n`` successive results of ``fn(*args, **kwargs)``, or None if ``fn`` is not
    a scalar draw of numpy's legacy generator."""
    owner: Any = getattr(fn, "__self__", None)
    kind = type(owner)
    if (
        kind.__name__ != "RandomState"
        or not kind.__module__.startswith("numpy.random")
        or getattr(fn, "__name__", None) not in DRAWING
    ):
        return None
    _pending.clear()
    n = max(1, min(n, _MOST))
    state = owner.get_state()
    draws = []
    for _ in range(n):
        value = fn(*args, **kwargs)
        if not isinstance(value, _SCALARS) and getattr(value, "ndim", None) != 0:
            owner.set_state(state)  # an array (size=...): not a scalar draw
            return None
        draws.append(value)
    token = next(_tokens)
    _pending[token] = (owner, state, fn, args, kwargs)
    return token, draws


def settle(token: int, used: int) -> None:
    """The client used ``used`` draws of batch ``token``: the generator goes back to
    where those draws alone would have left it."""
    batch = _pending.pop(token, None)
    if batch is None:
        return
    owner, state, fn, args, kwargs = batch
    owner.set_state(state)
    for _ in range(used):
        fn(*args, **kwargs)
