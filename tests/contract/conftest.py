"""The ``st`` fixture of the contract modules."""

from .common import st  # noqa: F401  (fixture)
