# Loaded by `tether run` in the script's interpreter (through PYTHONPATH) before
# the script starts: it makes the remoted modules import from the worker.
# Then it runs any other sitecustomize the environment has, which this file
# shadows.
import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("TETHER_REMOTE"):
    from collections.abc import Iterable

    try:
        from tether.client._bootstrap import activate
        from tether.client._session import Session
    except Exception as exc:
        # Python would print "Error in sitecustomize" and run the script here,
        # on the wrong machine (or fail at its first remoted import): stop now.
        sys.stderr.write(
            f"tether: error: {sys.executable} cannot load Tether's client "
            f"({type(exc).__name__}: {exc}); run the script with the Python that "
            "Tether is installed in, or install tether in this one\n"
        )
        sys.stderr.flush()
        os._exit(1)

    def _connect(remote: Iterable[str]) -> Session:
        # Loaded on the first remoted import only: most of a script's
        # children never connect.
        from tether._api import connect

        return connect(remote=remote)

    activate(_connect)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
