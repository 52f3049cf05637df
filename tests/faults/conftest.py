"""The fault tests reuse the acceptor tests' helpers (tests/acceptor)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptor"))
