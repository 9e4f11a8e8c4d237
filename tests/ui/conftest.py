"""Dashboard tests: a recorded real run for deterministic screens, the real engine for live ones."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from cortensor_desktop.tui.app import DashboardApp, NodeInfo, SettingsData, create_app
from cortensor_desktop.tui.backends.first_run import FirstRun
from cortensor_desktop.tui.backends.models import ModelRow, model_rows
from engine.state.commands import CommandQueue
from engine.state.events import Event, EventBus, HardwareSample
from engine.state.recording import read_events
from profiler.catalogue import Catalogue, load_catalogue
from profiler.hardware import load_hardware_file
from tests.node.conftest import make_network, models_dir  # noqa: F401 (fixtures for live tests)

DATA = Path(__file__).parent / "data"
RECORDING = DATA / "recorded_run.jsonl"
SIZE = (120, 40)
# `cortensor-desktop run --headless --miners 3 --sessions 2 --record ...` on a scratch home.
INFO = NodeInfo(
    network="embedded", model="smollm2-135m-instruct", n_ctx=2048, n_threads=1, miners=3
)


# What a host's HardwareWatch publishes, normalised so screens are the same on every machine
# (seq 1: a reader subscribing with after_seq=0 gets it from the bus's history; ts 0 leaves the
# summary's clock to the recording).
FIXED_HARDWARE = HardwareSample(
    seq=1, cpu_percent=42.0, ram_used_bytes=3 * 2**30, ram_total_bytes=16 * 2**30
)


def hardware_bus() -> EventBus:
    """A bus already carrying the fixed hardware reading, as a host publishes one at start."""
    bus = EventBus()
    bus.publish(FIXED_HARDWARE, stamp=False)
    return bus


@pytest.fixture(scope="session")
def recorded() -> list[Event]:
    events = list(read_events(RECORDING))
    assert len(events) > 40, "the recording should hold a real run"
    return events


def replay_app(
    events: list[Event], commands: CommandQueue | None = None
) -> tuple[DashboardApp, EventBus]:
    """An app over a bus that will carry the recording; the clock stops at the last event."""
    bus = hardware_bus()
    last = max(e.ts for e in events)
    app = create_app(bus, commands, INFO, clock=lambda: last, refresh_s=60)
    return app, bus


def publish_all(bus: EventBus, events: list[Event]) -> None:
    for event in events:
        bus.publish(event, stamp=False)


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test on its own event loop (no pytest-asyncio plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


LAPTOP = Path(__file__).parents[1] / "profiler" / "recorded" / "laptop_8gb_recorded.json"


def laptop_model_rows() -> list[ModelRow]:
    """The Models screen's rows for a recorded 8 GB laptop (deterministic: no live probe)."""
    from engine.models.store import InstalledModel

    catalogue = load_catalogue()
    installed = [
        InstalledModel(
            "smollm2-135m-instruct", "Q4_1", Path("/models/smollm2.gguf"), 98_000_000, True
        )
    ]
    return model_rows(load_hardware_file(LAPTOP), catalogue, installed)


def laptop_first_run(root: Path, catalogue: Catalogue | None = None) -> FirstRun:
    """The wizard's services for the recorded 8 GB laptop on a fresh home and model folder
    under `root` (cheap scrypt: many keystores are written in tests)."""
    from chain.wallet import DEVNET_SCRYPT_N
    from cortensor_desktop.paths import resolve_paths

    paths = resolve_paths({"CORTENSOR_HOME": str(root / "home")})
    return FirstRun(
        load_hardware_file(LAPTOP),
        catalogue or load_catalogue(),
        paths,
        paths.config_file,
        root / "models",
        running_model="smollm2-135m-instruct",
        scrypt_n=DEVNET_SCRYPT_N,
    )


def sample_settings() -> SettingsData:
    """Settings with one key changed from its default, on the embedded profile."""
    from dataclasses import replace

    from cortensor_desktop.config import Config, FitSection
    from cortensor_desktop.networks import NetworkProfile
    from cortensor_desktop.tui.backends.settings import network_lines, settings_rows

    config = replace(Config(), fit=FitSection(ram_buffer_pct=30.0))
    profile = NetworkProfile(name="embedded", embedded=True, description="in-process chain")
    network = network_lines(profile, Path("/home/me/.config/cortensor/config.toml"), Path("-"))
    return SettingsData(network, settings_rows(config))
