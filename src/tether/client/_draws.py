"""Draws from a remoted ``numpy.random``, made here from the worker's generator.

See :mod:`tether.acceptor._draws` for the worker's half and why the numbers are
the worker's own. On the first draw after any other call the client checks the
global generator out (one round trip: its state), then answers every draw of
numpy's legacy functions with plain arguments (``binomial(1, 0.9)``,
``choice(letters)``, ``normal(-0.1, 1)``) from a local ``RandomState`` in that
state, and checks it back in ahead of the next other call it sends. A draw that
makes an array (``size=``, ``rand(3)``, a list of means) is sent to the worker,
so arrays stay the worker's; but for ``choice(population, size=k)`` of plain data
(a genetic algorithm's parents) the indices are drawn here (:meth:`Draws.choice`:
the same stream as the worker's choice, which draws by the population's size only)
and the worker builds the array from them (``np.take``, client/_replica.py).

The client learns once per function whether it is such a draw (one round trip).

The client's libraries keep the client's own numpy (``--remote numpy``), so they
draw from its global generator, not the worker's: scikit-learn's ``make_blobs()``
with no ``random_state``. ``np.random.seed(n)`` in the script seeds both, so a
seeded script stays seeded, and a library that draws right after the seed draws
what it would have locally (after the script's own draws it would have drawn
further along the one stream a plain run has; here it draws from its own).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tether.client._proxy import RemoteType

if TYPE_CHECKING:
    from tether.client._remoting import Remoting

#: What :meth:`Draws.call` returns when the call must go to the worker as usual.
MISS: Final = object()
#: Items ``choice(a, size=k)`` draws here at most.
MAX_CHOSEN: Final = 4096
#: numpy's ``RandomState.choice`` signature, to read a call's arguments as numpy does.
_CHOICE: Final = inspect.Signature(
    [
        inspect.Parameter("a", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("size", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
        inspect.Parameter("replace", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=True),
        inspect.Parameter("p", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
    ]
)
_UNKNOWN: Final = object()
#: What the worker's ``drawing_name`` calls the global generator's seed and shuffle,
#: and the shuffle of any other (acceptor/_draws.py: SEEDING, SHUFFLING,
#: GENERATOR_SHUFFLE).
_SEEDING: Final = "seed"
_SHUFFLING: Final = "shuffle"
_GENERATOR_SHUFFLE: Final = "generator shuffle"
_PLAIN: Final = (int, float, str, bool, type(None))
#: Where each drawing method takes its ``size`` (rand and randn take shapes).
_SIZE_AT: Final = {
    "random_sample": 0, "random": 0, "standard_normal": 0, "standard_exponential": 0,
    "standard_cauchy": 0, "poisson": 1, "exponential": 1, "chisquare": 1, "geometric": 1,
    "pareto": 1, "power": 1, "rayleigh": 1, "weibull": 1, "zipf": 1, "logseries": 1,
    "standard_gamma": 1, "standard_t": 1, "choice": 1, "binomial": 2, "normal": 2,
    "uniform": 2, "randint": 2, "random_integers": 2, "beta": 2, "gamma": 2, "lognormal": 2,
    "logistic": 2, "laplace": 2, "gumbel": 2, "f": 2, "negative_binomial": 2,
    "noncentral_chisquare": 2, "wald": 2, "vonmises": 2, "hypergeometric": 3,
    "noncentral_f": 3, "triangular": 3,
}  # fmt: skip


def _one_number(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True if ``name(*args, **kwargs)`` draws one number (not an array), with plain
    arguments only: no size, no sequence but choice's population and weights."""
    if name in ("rand", "randn"):
        return not args and not kwargs
    at = _SIZE_AT.get(name)
    if at is None or kwargs.get("size") is not None:
        return False
    if len(args) > at and args[at] is not None:
        return False
    for i, a in enumerate(args):
        t = type(a)
        if t in _PLAIN or (name == "choice" and i in (0, 3) and _plain_sequence(a)):
            continue
        return False
    for key, a in kwargs.items():
        t = type(a)
        if t in _PLAIN or (name == "choice" and key in ("a", "p") and _plain_sequence(a)):
            continue
        return False
    return True


def _seed_client_numpy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Seed the client's own numpy's global generator, the libraries' (see the
    module docstring), as the script seeds the worker's."""
    import numpy

    with contextlib.suppress(Exception):  # the worker's seed raises it, in numpy's words
        numpy.random.seed(*args, **kwargs)


def _plain_sequence(a: Any) -> bool:
    return (type(a) is list or type(a) is tuple) and all(type(x) in _PLAIN for x in a)


class Draws:
    """One session's use of the worker's global random generator."""

    def __init__(self, session: Remoting) -> None:
        self._s = session
        self._names: dict[int, Any] = {}  # function handle id -> method name or None
        self._local: Any = None  # a local RandomState while checked out
        self._remote: Any = None  # the worker's helper module

    def call(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hid = target._t_id
        name = self._names.get(hid, _UNKNOWN)
        if name is None:
            return MISS
        if name is _UNKNOWN:
            if not (
                all(type(a) in _PLAIN or _plain_sequence(a) for a in args)
                or (len(args) == 1 and not kwargs and self._own_sequence(args[0]))
            ):
                return MISS  # (a proxy argument: not worth asking about the function)
            drawing_name = self._helpers().drawing_name
            with self._s.quietly():
                name = self._names[hid] = drawing_name(target)
            if name is None:
                return MISS
        if name == _SEEDING:
            _seed_client_numpy(args, kwargs)
            return MISS  # the worker's generator is seeded as the script asked
        if name in (_SHUFFLING, _GENERATOR_SHUFFLE):
            if len(args) != 1 or kwargs or not self._own_sequence(args[0]):
                return MISS  # a remote array is shuffled where it is
            self._shuffle(target, name, args[0])
            return None
        if not _one_number(name, args, kwargs):
            return MISS  # arrays are the worker's to make
        local = self._local
        if local is None:
            local = self._check_out()
        return getattr(local, name)(*args, **kwargs)

    def choice(
        self,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        buildable: Callable[[Any], bool],
    ) -> Any:
        """For ``np.random.choice(a, size=k[, replace][, p])`` with ``a`` a positive
        int or a plain sequence that ``buildable`` accepts, ``p`` None or plain and
        ``k`` an int: ``(a, indices)``, the indices drawn here; else :data:`MISS`."""
        if self._names.get(target._t_id) != "choice":
            return MISS
        try:
            bound = _CHOICE.bind(*args, **kwargs)
        except TypeError:
            return MISS  # the worker raises it, with numpy's words
        bound.apply_defaults()
        a, size, replace, p = bound.args
        if type(size) is not int or not 0 < size <= MAX_CHOSEN or type(replace) is not bool:
            return MISS
        if p is not None and not _plain_sequence(p):
            return MISS
        if type(a) is int:
            if a <= 0:
                return MISS
        elif not (_plain_sequence(a) and a and buildable(a)):
            return MISS
        local = self._local if self._local is not None else self._check_out()
        state = local.get_state()
        try:  # numpy's choice draws by the population's size alone
            picked = local.choice(a if type(a) is int else len(a), size, replace, p)
        except Exception:
            local.set_state(state)
            return MISS  # (numpy checks before it draws; the worker raises it)
        return a, [int(i) for i in picked]

    def is_draw(self, target: Any) -> bool:
        """Whether remote function ``target`` is known to be a drawing method of
        numpy's global generator, or its seed (they change no array: ``shuffle``
        does, and is not one)."""
        name = self._names.get(target._t_id)
        return name is not None and name != _SHUFFLING and name != _GENERATOR_SHUFFLE

    def _shuffle(self, target: Any, name: str, x: Any) -> None:
        """``np.random.shuffle(x)`` or ``rng.shuffle(x)`` (``target``) of the script's
        own list or array ``x``: shuffled here, in place, in the order a plain run
        gives; the worker's copy of it would be shuffled instead. The global
        generator shuffles checked out; another's order is drawn by the worker
        (one round trip): every shuffle of n items draws alike, whatever they are."""
        if name == _SHUFFLING:
            local = self._local if self._local is not None else self._check_out()
            local.shuffle(x)
            return
        order = self._helpers().order
        with self._s.quietly():  # (it changes that generator only: no array, no global draw)
            idx = order(target, len(x))
        if type(x) is list:
            x[:] = [x[i] for i in idx]
        else:
            x[...] = x[idx]

    @staticmethod
    def _own_sequence(x: Any) -> bool:
        """The script's own list, or an array of the client's numpy with a first axis."""
        t = type(x)
        if t is list:
            return True
        return (
            t.__name__ == "ndarray"
            and t.__module__ == "numpy"
            and type(t) is not RemoteType  # (a remote array's mirror has the same name)
            and x.ndim > 0
        )

    def _helpers(self) -> Any:
        if self._remote is None:
            with self._s.quietly():
                self._remote = self._s.import_module("tether.acceptor._draws")
        return self._remote

    def _check_out(self) -> Any:
        import numpy

        check_out = self._helpers().check_out
        with self._s.quietly():  # (it changes no array: local copies stay good)
            name, raw, pos, has_gauss, cached = check_out()
        local = numpy.random.RandomState()
        keys = numpy.frombuffer(raw, dtype=numpy.uint32).copy()
        local.set_state((name, keys, pos, has_gauss, cached))
        self._local = local
        self._s.draws_pending = True
        return local

    def settle(self) -> None:
        """Check the generator back in (before any other call is sent)."""
        local, self._local = self._local, None
        self._s.draws_pending = False
        if local is not None:
            name, keys, pos, has_gauss, cached = local.get_state()
            state = (str(name), keys.tobytes(), int(pos), int(has_gauss), float(cached))
            check_in = self._helpers().check_in
            with self._s.quietly():
                self._s.apply_none(check_in, state)
