"""A small package beside the scripts (client-only), with a relative import."""

from .metrics import accuracy, confusion

__all__ = ["accuracy", "confusion"]
