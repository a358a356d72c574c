"""Reading trending messages: the cluster and window end the hub orders windows by."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.feed import window_of


def test_window_of_reads_the_cluster_and_the_end_as_epoch_seconds() -> None:
    assert window_of({"cluster": 3, "window_end": "2026-01-01T00:10:00Z"}) == (3, 1767226200.0)
    naive_is_utc = window_of({"cluster": 0, "window_end": "2026-01-01T00:10:00"})
    assert naive_is_utc == (0, 1767226200.0)


@pytest.mark.parametrize(
    "data",
    [
        {"window_end": "2026-01-01T00:10:00Z"},
        {"cluster": "3", "window_end": "2026-01-01T00:10:00Z"},
        {"cluster": True, "window_end": "2026-01-01T00:10:00Z"},
        {"cluster": 3},
        {"cluster": 3, "window_end": 17},
        {"cluster": 3, "window_end": "yesterday"},
    ],
)
def test_window_of_refuses_what_is_not_a_window(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        window_of(data)
