"""Tether's version, in one place below everything that reports it.

The top package re-exports it as ``tether.__version__``; modules that print or
serve the version import it from here, so that no module below the public face
imports the face itself. Keep it equal to ``version`` in ``pyproject.toml``.
"""

from __future__ import annotations

__version__ = "0.1.0"
