"""What the Settings screen lists: every config key with its value and its help, and the network
profile in use. Pure: a loaded config and a profile in, rows out (no textual, no I/O).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cortensor_desktop.config import Config
from cortensor_desktop.networks import NetworkProfile


@dataclass(frozen=True)
class SettingRow:
    key: str  # section.key, as in config.toml and CORTENSOR_<SECTION>__<KEY>
    value: str
    default: bool
    help: str


def settings_rows(config: Config) -> list[SettingRow]:
    rows = []
    defaults = Config()
    for section in dataclasses.fields(config):
        current, default = getattr(config, section.name), getattr(defaults, section.name)
        for item in dataclasses.fields(current):
            value = getattr(current, item.name)
            rows.append(
                SettingRow(
                    key=f"{section.name}.{item.name}",
                    value=repr(value) if isinstance(value, str) else str(value),
                    default=value == getattr(default, item.name),
                    help=str(item.metadata.get("help", "")),
                )
            )
    return rows


def network_lines(profile: NetworkProfile, config_source: Path | None, config_path: Path) -> str:
    rpc = ", ".join(profile.rpc_urls) or ("in this process" if profile.embedded else "none")
    source = str(config_source) if config_source else f"{config_path} (not created: defaults)"
    kind = " (embedded)" if profile.embedded and profile.name != "embedded" else ""
    lines = [
        f"network   {profile.name}{kind}",
        f"chain id  {profile.chain_id if profile.chain_id is not None else 'set at start'}",
        f"RPC URLs  {rpc}",
        f"config    {source}",
    ]
    if profile.description:
        lines.append(f"          {profile.description}")
    return "\n".join(lines)
