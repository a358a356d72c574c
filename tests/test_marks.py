"""tests/conftest.py refuses tests that start Spark or the stack without their mark."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import unmarked


@dataclass
class Item:
    fixturenames: list[str]
    marks: list[str] = field(default_factory=list)

    def iter_markers(self) -> Iterator[Any]:
        return iter(getattr(pytest.mark, name).mark for name in self.marks)


def test_a_test_using_spark_without_the_spark_mark_is_named() -> None:
    assert unmarked(Item(["spark", "tmp_path"])) == ["spark"]  # type: ignore[arg-type]


def test_a_test_using_the_stack_without_the_stack_mark_is_named() -> None:
    assert unmarked(Item(["settings", "stack_overrides"], ["spark"])) == ["stack"]  # type: ignore[arg-type]


def test_marked_or_pure_tests_pass() -> None:
    assert unmarked(Item(["spark", "stack_overrides"], ["spark", "stack"])) == []  # type: ignore[arg-type]
    assert unmarked(Item(["tmp_path"])) == []  # type: ignore[arg-type]
