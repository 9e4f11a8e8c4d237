"""Polite-mining policies, fed psutil-shaped sample readings through the live adapter.

The samples are hand-written, not recorded: this VM has no temperature sensors or battery.
"""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.host.policies import (
    HourWindow,
    PolicySettings,
    PolicyState,
    Readings,
    evaluate,
    readings_from_psutil,
    thread_decision,
    thread_share,
)

SAMPLES = Path(__file__).parent / "data" / "laptop_sensor_samples.json"


def _replay(settings: PolicySettings) -> list[tuple[str, bool, tuple[str, ...]]]:
    state = PolicyState()
    out = []
    for sample in json.loads(SAMPLES.read_text())["samples"]:
        temperatures = {
            chip: [tuple(e) for e in entries] for chip, entries in sample["temperatures"].items()
        }
        battery = tuple(sample["battery"]) if sample["battery"] else None
        readings = readings_from_psutil(time.fromisoformat(sample["t"]), temperatures, battery)
        decision = evaluate(settings, readings, state)
        state = decision.state
        out.append((sample["t"], decision.paused, decision.reasons))
    return out


def test_sample_heat_pauses_above_85_and_resumes_only_below_75() -> None:
    settings = PolicySettings(cpu_pause_above_c=85, cpu_resume_below_c=75)
    paused = {t: p for t, p, _ in _replay(settings)}
    assert paused["16:45"] is False
    assert paused["16:46"] is True  # 86 > 85
    assert paused["16:47"] is True  # 84: still above the resume point (hysteresis)
    assert paused["16:49"] is True  # 76: still not below 75
    assert paused["16:52"] is False  # 74 < 75: resumed


def test_sample_unplugging_pauses_on_battery_with_a_reason() -> None:
    replay = _replay(PolicySettings(pause_on_battery=True))
    by_time = {t: (p, r) for t, p, r in replay}
    assert by_time["17:02"][0] is True
    assert "battery" in by_time["17:02"][1][0]
    assert by_time["17:40"][0] is False


def test_sample_day_outside_active_hours() -> None:
    settings = PolicySettings(active_hours=(HourWindow.parse("22:00-07:00"),))
    by_time = {t: (p, r) for t, p, r in _replay(settings)}
    assert by_time["16:40"][0] is True
    assert "outside active hours (22:00-07:00)" in by_time["16:40"][1][0]
    assert by_time["23:10"][0] is False


def test_several_reasons_are_all_reported() -> None:
    settings = PolicySettings(
        cpu_pause_above_c=80, pause_on_battery=True, active_hours=(HourWindow.parse("09:00-10:00"),)
    )
    decision = evaluate(
        settings, Readings(time(12, 0), cpu_temp_c=90, on_battery=True), PolicyState()
    )
    assert len(decision.reasons) == 3


def test_unknown_temperature_keeps_the_latch_as_it_was() -> None:
    settings = PolicySettings(gpu_pause_above_c=80, gpu_resume_below_c=70)
    hot = evaluate(settings, Readings(time(1), gpu_temp_c=85), PolicyState())
    still = evaluate(settings, Readings(time(1), gpu_temp_c=None), hot.state)
    assert still.paused and "GPU" in still.reasons[0]


def test_resume_must_be_below_pause() -> None:
    with pytest.raises(ValueError, match="resume temperature"):
        PolicySettings(cpu_pause_above_c=70, cpu_resume_below_c=75)


def test_bad_hour_window_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        HourWindow.parse("nine to five")


@given(st.integers(1, 256), st.integers(1, 64), st.one_of(st.none(), st.integers(1, 64)))
def test_thread_share_never_oversubscribes_or_starves(
    cores: int, nodes: int, cap: int | None
) -> None:
    share = thread_share(cores, nodes, cap)
    assert share >= 1
    if cap:
        assert share <= cap
    if nodes <= cores:
        assert share * nodes <= cores


def test_adapter_prefers_the_cpu_package_chip_and_ignores_unknown_chips() -> None:
    readings = readings_from_psutil(
        time(12),
        {
            "nvme": [("Composite", 40.0, None, None)],
            "coretemp": [("Package id 0", 71.0, None, None), ("Core 1", 69.0, None, None)],
        },
        (50.0, 100.0, False),
    )
    assert readings.cpu_temp_c == 71.0
    assert readings.on_battery is True
    assert (
        readings_from_psutil(time(12), {"nvme": [("x", 40.0, None, None)]}, None).cpu_temp_c is None
    )


def test_thread_decision_says_why_and_names_the_cap_only_when_it_bites() -> None:
    assert thread_decision(8, 2, None) == (
        4,
        "4 llama.cpp thread(s): 8 physical cores shared by 2 node(s)",
    )
    threads, why = thread_decision(8, 1, 3)
    assert threads == 3 and "capped at 3 ([policy] thread_cap)" in why
    assert "capped" not in thread_decision(8, 4, 3)[1]  # the share (2) is below the cap
