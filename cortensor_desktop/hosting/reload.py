"""Config reload (SIGHUP or the `reload_config` command): apply what can change live, name the rest.

`config_changes(old, new)` is pure: it lists the dotted keys that differ and splits them into
what a running node applies at once (`[policy]`, `[logging] level`) and what needs a restart
(everything else: the network, the model, the API port...). The run loop applies the live part
and answers the command with both lists, so an operator knows whether the edit took effect.
`ConfigReloader` is that run-loop part, the one reload routine every host uses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cortensor_desktop.config import Config, ConfigError, load_config

if TYPE_CHECKING:  # the settings screen imports this module: keep it light
    from engine.host.node_host import HostSettings
    from engine.host.policies import PolicySettings

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
    """`live_sections`/`live_keys`: what this node applies without a restart (a host without a
    polite-mining monitor passes no live sections, only `logging.level`)."""
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


def with_live_changes(running: Config, fresh: Config, live: tuple[str, ...]) -> Config:
    """The running config with the keys that applied live taken from `fresh`; keys that need a
    restart keep their running values, so the next reload still names them."""
    for key in live:
        section_name, field_name = key.split(".", 1)
        section = getattr(running, section_name)
        fresh_value = getattr(getattr(fresh, section_name), field_name)
        section = dataclasses.replace(section, **{field_name: fresh_value})
        running = dataclasses.replace(running, **{section_name: section})
    return running


def host_settings(config: Config) -> HostSettings:
    """The node host's settings from `[policy]` and `[alerts]`."""
    from engine.host.node_host import HostSettings

    return HostSettings(
        policy=config.policy.to_policy_settings(),
        policy_interval_s=config.policy.sample_interval_s,
        low_gas_wei=config.alerts.low_gas_wei,
    )


class PolicyTarget(Protocol):
    """A host with a polite-mining monitor (`engine.host.node_host.NodeHost`)."""

    def apply_policy(self, settings: PolicySettings, interval_s: float) -> None: ...


Replan = Callable[[Config], str]  # the fresh config -> what the node now runs; raises to refuse


class ConfigReloader:
    """Re-reads the config file and applies what can change live: the log level, `[policy]`
    when there is a polite-mining monitor to hand it to (`policy`), and `[fit]` when the node
    can re-plan (`replan`: it finishes its open task, swaps the model and re-registers)."""

    def __init__(
        self,
        running: Config,
        path: Path,
        policy: PolicyTarget | None = None,
        replan: Replan | None = None,
    ) -> None:
        self.running = running
        self.path = path
        self.policy = policy
        self.replan = replan

    def __call__(self) -> tuple[bool, str]:
        fresh, why_not = reread(self.path)
        if fresh is None:
            return False, why_not
        sections = LIVE_SECTIONS if self.policy is not None else frozenset()
        if self.replan is not None:
            sections = sections | {"fit"}
        changes = config_changes(self.running, fresh, sections, LIVE_KEYS)
        replanned = ""
        if self.replan is not None and any(k.startswith("fit.") for k in changes.live):
            try:
                replanned = f"; {self.replan(fresh)}"
            except Exception as exc:  # a plan that cannot fit or install: the running one stays
                return False, f"config not reloaded, the running plan stays: {exc}"

        if "logging.level" in changes.live:
            logging.getLogger().setLevel(fresh.logging.level.upper())
        if self.policy is not None and any(k.startswith("policy.") for k in changes.live):
            self.policy.apply_policy(
                fresh.policy.to_policy_settings(), fresh.policy.sample_interval_s
            )
        self.running = with_live_changes(self.running, fresh, changes.live)
        return True, changes.describe() + replanned
