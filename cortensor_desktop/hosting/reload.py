"""Config reload (SIGHUP or the `reload_config` command): apply what can change live, name the rest.

`config_changes(old, new)` is pure: it lists the dotted keys that differ and splits them into
what a running node applies at once (`[policy]`, `[logging] level`) and what needs a restart
(everything else: the network, the model, the API port...). The run loop applies the live part
and answers the command with both lists, so an operator knows whether the edit took effect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from cortensor_desktop.config import Config, ConfigError, load_config

LIVE_SECTIONS = frozenset({"policy"})
LIVE_KEYS = frozenset({"logging.level"})


@dataclass(frozen=True)
class ConfigChanges:
    live: tuple[str, ...]
    restart: tuple[str, ...]

    def describe(self) -> str:
        if not self.live and not self.restart:
            return "config reloaded: no changes"
        parts = []
        if self.live:
            parts.append(f"applied live: {', '.join(self.live)}")
        if self.restart:
            parts.append(f"needs a restart: {', '.join(self.restart)}")
        return "config reloaded; " + "; ".join(parts)


def config_changes(
    old: Config,
    new: Config,
    live_sections: Set[str] = LIVE_SECTIONS,
    live_keys: Set[str] = LIVE_KEYS,
) -> ConfigChanges:
    """`live_sections`/`live_keys`: what this node applies without a restart (the embedded
    network has no polite-mining monitor, so its host passes only `logging.level`)."""
    live: list[str] = []
    restart: list[str] = []
    for section_field in dataclasses.fields(Config):
        name = section_field.name
        before, after = getattr(old, name), getattr(new, name)
        for key_field in dataclasses.fields(before):
            key = f"{name}.{key_field.name}"
            if getattr(before, key_field.name) != getattr(after, key_field.name):
                (live if name in live_sections or key in live_keys else restart).append(key)
    return ConfigChanges(tuple(live), tuple(restart))


def reread(path: Path) -> tuple[Config | None, str]:
    """The config file read again: (the new config, "") or (None, why the running one stays)."""
    try:
        return load_config(path).config, ""
    except ConfigError as exc:
        return None, f"config not reloaded, the running one stays: {exc}"
