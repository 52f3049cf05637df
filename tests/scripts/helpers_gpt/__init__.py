"""A small model package of the script's own: a remote decorator on a method,
and a function patched onto a remote class."""

from .model import TinyGPT
from .patch import install_helpers

__all__ = ["TinyGPT", "install_helpers"]
