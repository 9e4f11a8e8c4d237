"""Config reload (SIGHUP or the `reload_config` command): apply what can change live, name the rest.

`config_changes(old, new)` is pure: it lists the dotted keys that differ and splits them into
what a running node applies at once (`[policy]`, `[logging] level`) and what needs a restart
(everything else: the network, the model, the API port...). The run loop applies the live part
and answers the command with both lists, so an operator knows whether the edit took effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cortensor_desktop.config import Config

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


def config_changes(old: Config, new: Config) -> ConfigChanges:
    live: list[str] = []
    restart: list[str] = []
    for section_field in dataclasses.fields(Config):
        name = section_field.name
        before, after = getattr(old, name), getattr(new, name)
        for key_field in dataclasses.fields(before):
            key = f"{name}.{key_field.name}"
            if getattr(before, key_field.name) != getattr(after, key_field.name):
                (live if name in LIVE_SECTIONS or key in LIVE_KEYS else restart).append(key)
    return ConfigChanges(tuple(live), tuple(restart))
