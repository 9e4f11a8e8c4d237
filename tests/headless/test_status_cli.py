"""`status` against status APIs served by this test process; config reload's live/restart split."""

from __future__ import annotations

import json
from pathlib import Path

from cortensor_desktop.config import Config, PolicySection, load_config
from cortensor_desktop.hosting.reload import ConfigReloader, config_changes
from cortensor_desktop.service.status_api import StatusApi, SummaryHolder
from engine.host.policies import PolicySettings
from engine.protocol import NodeRole
from engine.state.commands import CommandQueue
from engine.state.events import EventBus, NodeState, NodeStateChanged
from engine.state.summary import Summary
from tests.conftest import run_cli


def _serve(home: Path) -> StatusApi:
    holder = SummaryHolder(Summary(started_at=1.0), {"network": "embedded"})
    holder.apply(
        NodeStateChanged(seq=1, ts=2.0, node="0xm", role=NodeRole.MINER, state=NodeState.REGISTERED)
    )
    api = StatusApi(holder, EventBus(), CommandQueue(), home / "data")
    api.start()
    return api


def test_status_of_this_home_and_of_a_fleet(tmp_path: Path) -> None:
    fleet = tmp_path / "nodes"
    running, stale, never = fleet / "a", fleet / "b", fleet / "c"
    (never / "config").mkdir(parents=True)
    api = _serve(running)
    gone = _serve(stale)
    gone_port = gone.port
    gone.stop()  # a node that was killed leaves api.json behind; simulate that
    (stale / "data" / "api.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": gone_port, "pid": 999999})
    )
    try:
        result = run_cli(running, "status", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "running"
        text = run_cli(running, "status")
        assert text.returncode == 0 and "state      running" in text.stdout

        dead = run_cli(stale, "status")
        assert dead.returncode == 8
        assert "does not answer" in dead.stderr and "run --headless" in dead.stderr
        assert len(dead.stderr.strip().splitlines()) == 1

        fleet_json = run_cli(running, "status", "--all", str(fleet), "--json")
        assert fleet_json.returncode == 0, fleet_json.stderr
        states = {Path(r["home"]).name: r["state"] for r in json.loads(fleet_json.stdout)["homes"]}
        assert states == {"a": "running", "b": "not_running", "c": "not_running"}
    finally:
        api.stop()
    none = run_cli(running, "status", "--all", str(fleet))
    assert none.returncode == 8 and "no node is running under" in none.stderr


def test_reload_applies_policy_and_log_level_live_and_names_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[policy]\npause_on_battery = true\n[logging]\nlevel = "debug"\n'
        "[api]\nport = 9100\n[inference]\nthreads = 2\n"
    )
    changes = config_changes(Config(), load_config(path, {}).config)
    assert changes.live == ("logging.level", "policy.pause_on_battery")
    assert changes.restart == ("inference.threads", "api.port")
    assert "needs a restart: inference.threads, api.port" in changes.describe()
    assert config_changes(Config(), Config()).describe() == "config reloaded: no changes"


def test_one_reloader_applies_the_live_part_and_keeps_naming_what_waits_for_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[policy]\npause_on_battery = true\n[api]\nport = 9100\n")
    handed: list[tuple[PolicySettings, float]] = []

    class Monitor:
        def apply_policy(self, settings: PolicySettings, interval_s: float) -> None:
            handed.append((settings, interval_s))

    reload = ConfigReloader(Config(), path, policy=Monitor())
    accepted, message = reload()
    assert accepted and "applied live: policy.pause_on_battery" in message
    assert [(s.pause_on_battery, every) for s, every in handed] == [(True, 30.0)]
    # The policy now runs; the port still waits for a restart, so a second reload says so again.
    accepted, message = reload()
    assert accepted and message == "config reloaded; needs a restart: api.port"
    assert len(handed) == 1
    # A host without a policy monitor names [policy] as needing a restart instead.
    without_monitor = ConfigReloader(Config(), path)
    assert without_monitor()[1].endswith("needs a restart: api.port, policy.pause_on_battery")
    path.write_text("[policy]\nsample_interval_s = 0\n")
    refused, why = reload()
    assert not refused and "the running one stays" in why


def test_policy_section_maps_to_engine_settings_and_refuses_bad_values(tmp_path: Path) -> None:
    settings = PolicySection(
        cpu_pause_above_c=85, cpu_resume_below_c=75, active_hours=["22:00-07:00"]
    ).to_policy_settings()
    assert settings.cpu_pause_above_c == 85 and settings.gpu_pause_above_c is None
    assert str(settings.active_hours[0]) == "22:00-07:00"
    path = tmp_path / "config.toml"
    path.write_text("[policy]\ncpu_pause_above_c = 70\ncpu_resume_below_c = 80\n")
    result = run_cli(tmp_path / "home", "config", "show", "--config", str(path))
    assert result.returncode == 3 and "resume temperature must be below" in result.stderr
