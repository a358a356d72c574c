"""bench.e2e's cost table (pure): CPU ms per play per stage, adding up to the machine's total."""

from __future__ import annotations

import pytest

from bench.e2e.analysis import PhaseRecord, costs


def record(**changes: object) -> PhaseRecord:
    base: dict[str, object] = {
        "rate": 100.0,
        "seed": 1,
        "listeners": 10,
        "duration_s": 10.0,
        "settle_s": 60.0,
        "simulator_processes": 1,
        "raw": {"cpu_s": [0.4, 0.1], "events": [], "report": {}},
        "wall": (1000.0, 1010.0),
        "cpu": ({"gateway": 5.0, "broker": 20.0, "spark": 1.0}, {}),
        "pids": ({"gateway": 1, "broker": 2, "spark": 3}, {"gateway": 1, "broker": 2, "spark": 3}),
        "metrics": ("", ""),
        "stored": set(),
        "history_s": None,
        "polls": [],
        "settled": 1040.0,
        "zero": {},
        "lag_max": {},
        "cpu_settled": {"gateway": 6.0, "broker": 20.5, "spark": 3.0},
        "machine": (100.0, 104.5),
        "costs_until": 1030.0,
    }
    base.update(changes)
    return PhaseRecord(**base)  # type: ignore[arg-type]


def test_rows_are_ms_per_play_and_other_makes_them_add_up_to_the_machine() -> None:
    table = costs(record(), accepted=1000)
    assert table is not None
    rows = table["ms_per_play"]
    assert rows == {"spark": 2.0, "gateway": 1.0, "broker": 0.5, "simulator": 0.5, "other": 0.5}
    assert list(rows) == ["spark", "gateway", "broker", "simulator", "other"]  # largest first
    assert table["machine_ms_per_play"] == 4.5 == pytest.approx(sum(rows.values()))
    assert table["window_s"] == 30.0  # from the start to when the lags were 0


def test_a_restarted_program_is_left_out_and_no_readings_means_no_table() -> None:
    restarted = record(
        pids=({"gateway": 1, "broker": 2, "spark": 3}, {"gateway": 9, "broker": 2, "spark": 3})
    )
    table = costs(restarted, accepted=1000)
    assert table is not None and "gateway" not in table["ms_per_play"]
    assert table["ms_per_play"]["other"] == pytest.approx(1.5)  # its CPU is then "other"
    assert costs(record(machine=None), accepted=1000) is None
    assert costs(record(), accepted=0) is None
