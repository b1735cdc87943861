"""The README's generated tables (tests/readme_tables.py) are what the code says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .readme_tables import feature_table, protocol_table, route_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("table", [feature_table, protocol_table, route_table],
                         ids=lambda t: t.__name__)
def test_readme_holds_the_generated_table(table: Callable[[], str]) -> None:
    text = table()
    assert text in README, (f"README.md's {table.__name__} is stale: regenerate it with "
                            "python -m tests.readme_tables")
