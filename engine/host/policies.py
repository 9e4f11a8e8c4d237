"""Polite-mining policies: when a node should pause itself, and why.

Pure: readings and settings in, a decision with human-readable reasons out. The engine feeds it
live readings (or, in tests, recorded ones) on every hardware sample; the dashboard and the
status API show the reasons. Temperatures use hysteresis (pause above one figure, resume only
below a lower one) so a node hovering at the limit does not flap between states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time


@dataclass(frozen=True)
class HourWindow:
    """Mining allowed from `start` to `end` local time; a window may wrap past midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> HourWindow:
        try:
            first, second = (part.strip() for part in text.split("-"))
            return cls(time.fromisoformat(first), time.fromisoformat(second))
        except ValueError:
            raise ValueError(f"expected HH:MM-HH:MM, got {text!r}") from None

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class PolicySettings:
    cpu_pause_above_c: float | None = None
    cpu_resume_below_c: float | None = None
    gpu_pause_above_c: float | None = None
    gpu_resume_below_c: float | None = None
    pause_on_battery: bool = False
    active_hours: tuple[HourWindow, ...] = ()

    def __post_init__(self) -> None:
        for pause, resume, name in (
            (self.cpu_pause_above_c, self.cpu_resume_below_c, "cpu"),
            (self.gpu_pause_above_c, self.gpu_resume_below_c, "gpu"),
        ):
            if pause is not None and resume is not None and resume >= pause:
                raise ValueError(f"{name}: resume temperature must be below the pause temperature")


@dataclass(frozen=True)
class Readings:
    """One sample of what the policies look at; None where the OS does not say."""

    local_time: time
    cpu_temp_c: float | None = None
    gpu_temp_c: float | None = None
    on_battery: bool | None = None


@dataclass(frozen=True)
class PolicyState:
    """What must be remembered between samples: which hysteresis latches are closed."""

    cpu_hot: bool = False
    gpu_hot: bool = False


@dataclass(frozen=True)
class PolicyDecision:
    paused: bool
    reasons: tuple[str, ...]
    state: PolicyState = field(default_factory=PolicyState)


def _latch(hot: bool, reading: float | None, pause: float | None, resume: float | None) -> bool:
    if reading is None or pause is None:
        return hot if reading is None else False
    if hot:
        return reading >= (resume if resume is not None else pause)
    return reading > pause


def evaluate(settings: PolicySettings, readings: Readings, state: PolicyState) -> PolicyDecision:
    cpu_hot = _latch(
        state.cpu_hot, readings.cpu_temp_c, settings.cpu_pause_above_c, settings.cpu_resume_below_c
    )
    gpu_hot = _latch(
        state.gpu_hot, readings.gpu_temp_c, settings.gpu_pause_above_c, settings.gpu_resume_below_c
    )
    reasons: list[str] = []
    if cpu_hot:
        reasons.append(
            _heat_reason(
                "CPU", readings.cpu_temp_c, settings.cpu_pause_above_c, settings.cpu_resume_below_c
            )
        )
    if gpu_hot:
        reasons.append(
            _heat_reason(
                "GPU", readings.gpu_temp_c, settings.gpu_pause_above_c, settings.gpu_resume_below_c
            )
        )
    if settings.pause_on_battery and readings.on_battery:
        reasons.append("on battery power (pause_on_battery is set)")
    if settings.active_hours and not any(
        w.contains(readings.local_time) for w in settings.active_hours
    ):
        windows = ", ".join(str(w) for w in settings.active_hours)
        reasons.append(f"outside active hours ({windows}); it is {readings.local_time:%H:%M}")
    return PolicyDecision(
        paused=bool(reasons),
        reasons=tuple(reasons),
        state=PolicyState(cpu_hot=cpu_hot, gpu_hot=gpu_hot),
    )


def _heat_reason(
    what: str, reading: float | None, pause: float | None, resume: float | None
) -> str:
    now = f"{reading:.0f} °C" if reading is not None else "unknown now"
    until = resume if resume is not None else pause
    return f"{what} temperature {now}: paused above {pause:.0f} °C until below {until:.0f} °C"


def thread_share(physical_cores: int, nodes_on_host: int, thread_cap: int | None) -> int:
    """Threads for one of several nodes on a host: an even share, capped, never zero."""
    share = max(1, physical_cores // max(1, nodes_on_host))
    return max(1, min(share, thread_cap)) if thread_cap else share


def thread_decision(
    physical_cores: int, nodes_on_host: int, thread_cap: int | None
) -> tuple[int, str]:
    """The thread count for this node's llama.cpp worker and why, for the status and the log."""
    threads = thread_share(physical_cores, nodes_on_host, thread_cap)
    reason = f"{physical_cores} physical cores shared by {nodes_on_host} node(s)"
    if (
        thread_cap
        and threads == thread_cap
        and physical_cores // max(1, nodes_on_host) > thread_cap
    ):
        reason += f", capped at {thread_cap} ([policy] thread_cap)"
    return threads, f"{threads} llama.cpp thread(s): {reason}"


# psutil's sensor chips whose readings stand for the CPU package, best first.
_CPU_CHIPS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "acpitz")


def readings_from_psutil(
    local_time: time,
    temperatures: dict[str, list[tuple[str, float | None, float | None, float | None]]],
    battery: tuple[float, float, bool] | None,
    gpu_temp_c: float | None = None,
) -> Readings:
    """Turn psutil.sensors_temperatures()/sensors_battery() output into policy readings.

    The live engine and the tests both go through here, so the tests exercise the real path.
    """
    return Readings(
        local_time=local_time,
        cpu_temp_c=cpu_temperature(temperatures),
        gpu_temp_c=gpu_temp_c,
        on_battery=None if battery is None else not bool(battery[2]),
    )


def cpu_temperature(
    temperatures: dict[str, list[tuple[str, float | None, float | None, float | None]]],
) -> float | None:
    """The hottest core of the first CPU sensor chip psutil knows; None without one."""
    for chip in _CPU_CHIPS:
        currents = [entry[1] for entry in temperatures.get(chip, []) if entry[1] is not None]
        if currents:
            return max(currents)
    return None
