"""numpy's global random generator, lent to the client while it draws.

A script that draws one number at a time from a remoted ``numpy.random``
(``if np.random.binomial(1, 0.9) == 0:`` every step, ``np.random.random() <
rate`` per gene) would wait a round trip per draw. Instead the client
(``client/_draws.py``) *checks the generator out*: it takes the state of the
global ``RandomState`` here (:func:`check_out`), draws from a local
``RandomState`` in that state, and before the session sends anything else
*checks it back in* (:func:`check_in`, sent ahead of that call, no round trip).
The numbers are the ones this process would have drawn: numpy keeps the legacy
``RandomState`` streams stable across versions (NEP 19), and both ends run the
same algorithm from the same state.

Only the legacy global generator's drawing methods qualify (:func:`drawing_name`),
and its ``seed``, which the client repeats on its own numpy, and its ``shuffle``,
which the client runs on the checked-out generator when what it shuffles is the
script's own list or array (a copy of it here would be shuffled instead). A
generator of the script's (``default_rng(7).shuffle(order)``) shuffles such a list
by :func:`order`.
"""

from __future__ import annotations

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

#: Its method that seeds it: named to the client too, which seeds its own numpy's
#: global generator alike (the libraries' draws, client/_draws.py).
SEEDING: Final = "seed"

#: Its method that shuffles in place: named to the client, which shuffles the script's
#: own lists and arrays itself (it changes what it is given: not a draw).
SHUFFLING: Final = "shuffle"
#: The ``shuffle`` of any other ``RandomState`` or ``Generator`` (the script's own
#: ``default_rng(7)``): the client has such a list or array shuffled by :func:`order`.
GENERATOR_SHUFFLE: Final = "generator shuffle"

#: The state as plain data: (bit generator name, key words as bytes, position,
#: has a cached Gaussian, the cached Gaussian).
State = tuple[str, bytes, int, int, float]


def _global() -> Any:
    import numpy.random

    return numpy.random.random.__self__  # type: ignore[attr-defined]


def drawing_name(fn: Any) -> str | None:
    """``fn``'s name if it is a drawing method of numpy's global ``RandomState``,
    or its :data:`SEEDING` or :data:`SHUFFLING` method; :data:`GENERATOR_SHUFFLE`
    for the ``shuffle`` of another ``RandomState`` or ``Generator``."""
    owner = getattr(fn, "__self__", None)
    if owner is not _global():
        import numpy.random

        if type(owner) in (numpy.random.RandomState, numpy.random.Generator):
            return GENERATOR_SHUFFLE if getattr(fn, "__name__", None) == "shuffle" else None
        # numpy.random.seed is a function of the module that seeds the global one
        return SEEDING if fn is getattr(numpy.random, SEEDING, None) else None
    name = getattr(fn, "__name__", None)
    return name if name in DRAWING or name in (SEEDING, SHUFFLING) else None


def check_out() -> State:
    """The global generator's state, for the client to draw from."""
    name, keys, pos, has_gauss, cached = _global().get_state()
    return (str(name), keys.tobytes(), int(pos), int(has_gauss), float(cached))


def check_in(state: State) -> None:
    """The client is done drawing: the generator goes on from where it left off."""
    import numpy

    name, raw, pos, has_gauss, cached = state
    keys = numpy.frombuffer(raw, dtype=numpy.uint32).copy()
    _global().set_state((name, keys, pos, has_gauss, cached))


def order(shuffle: Any, n: int) -> list[int]:
    """The order ``shuffle`` (a :data:`GENERATOR_SHUFFLE`) puts ``n`` items in,
    drawn as shuffling them would draw: the client moves the script's own list
    or array into it. Every shuffle of n items along the first axis draws alike,
    whatever the items (a list, a vector, the rows of a matrix)."""
    idx = list(range(n))
    shuffle(idx)
    return idx
