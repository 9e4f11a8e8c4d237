"""What the Settings screen lists and how it edits: every config key with its value and help, the
network profile in use, and one key at a time saved through the config module's own validators
(`set_config_value`, the function `config set` calls). No textual here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cortensor_desktop.config import (
    Config,
    ConfigError,
    LoadedConfig,
    env_name,
    load_config,
    parse_value,
    set_config_value,
    toml_literal,
    write_atomically,
)
from cortensor_desktop.networks import (
    NetworkProfile,
    load_profile,
    parse_profile_text,
    profile_file,
)

RPC_KEY = "network.rpc_urls"  # lives in the profile's file, not in config.toml


@dataclass(frozen=True)
class SettingRow:
    key: str  # section.key, as in config.toml and CORTENSOR_<SECTION>__<KEY>
    value: str
    default: bool
    help: str
    text: str = ""  # the value as a person types it back (no quotes around strings)


@dataclass(frozen=True)
class SettingsData:
    network: str  # the profile and config file, as text
    rows: list[SettingRow]


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else toml_literal(value)


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
                    text=_as_text(value),
                )
            )
    return rows


def tilde(path: Path | str) -> str:
    """A path under the home folder as ~/..., shorter on screen and the same for every user."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + os.sep) else text


def network_lines(profile: NetworkProfile, config_source: Path | None, config_path: Path) -> str:
    rpc = ", ".join(profile.rpc_urls) or ("in this process" if profile.embedded else "none")
    where = tilde(config_source or config_path)
    source = where if config_source else f"{where} (not created: defaults)"
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


@dataclass(frozen=True)
class Saved:
    key: str
    old: Config
    new: Config
    where: Path
    overridden_by: str | None  # an environment variable that still wins over the file

    def describe(self) -> str:
        text = f"saved {self.key} to {tilde(self.where)}"
        if self.overridden_by:
            text += f"; {self.overridden_by} is set and still overrides it"
        return text


class SettingsBackend:
    """Reads and edits the config file (and the active profile's RPC URLs) of one home."""

    def __init__(
        self, config_path: Path, profiles_dir: Path, environ: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        self.profiles_dir = profiles_dir
        self.environ = dict(os.environ) if environ is None else environ

    def load(self) -> LoadedConfig:
        return load_config(self.config_path, self.environ)

    def profile(self, config: Config) -> NetworkProfile:
        return load_profile(self.profiles_dir, config.network.profile)

    def data(self) -> SettingsData:
        loaded = self.load()
        try:
            profile = self.profile(loaded.config)
        except ConfigError as exc:
            return SettingsData(f"network   {loaded.config.network.profile}: {exc}", [])
        rows = settings_rows(loaded.config)
        if not profile.embedded:
            urls = list(profile.rpc_urls)
            where = profile_file(self.profiles_dir, profile.name)
            help_text = f"RPC endpoints of the network, tried in order (kept in {where})"
            rows.insert(1, SettingRow(RPC_KEY, str(urls), True, help_text, toml_literal(urls)))
        return SettingsData(network_lines(profile, loaded.source, self.config_path), rows)

    def save(self, key: str, text: str) -> Saved:
        """Validate and write one key; ConfigError (one line) when refused, nothing written."""
        old = self.load().config
        if key == RPC_KEY:
            where = self._save_rpc_urls(old, text)
            return Saved(key, old, old, where, None)
        if key == "network.profile":  # the name's pattern first, then the profile must exist
            load_profile(self.profiles_dir, parse_value(key, text))
        new = set_config_value(self.config_path, key, text, self.environ).config
        env = env_name(key)
        return Saved(key, old, new, self.config_path, env if env in self.environ else None)

    def _save_rpc_urls(self, config: Config, text: str) -> Path:
        profile = self.profile(config)
        if profile.embedded:
            raise ConfigError("the embedded network runs in this process: it has no RPC URLs")
        urls = _url_list(text)
        path = profile_file(self.profiles_dir, profile.name)
        lines = path.read_text(encoding="utf-8").splitlines()
        literal = f"rpc_urls = {toml_literal(urls)}"
        at = [i for i, line in enumerate(lines) if line.strip().startswith("rpc_urls")]
        if at:
            lines[at[0]] = literal
        else:
            lines.insert(0, literal)
        new = "\n".join(lines) + "\n"
        parse_profile_text(profile.name, new, path)  # the profile's own checks, before writing
        write_atomically(path, new)
        return path


def _url_list(text: str) -> list[str]:
    """`["http://a", "http://b"]` (TOML) or `http://a, http://b`; each must be http(s)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{RPC_KEY}: not a list of URLs: {exc}") from None
        urls = [str(u) for u in value]
    else:
        urls = [u.strip() for u in stripped.split(",") if u.strip()]
    if not urls:
        raise ConfigError(f"{RPC_KEY}: give at least one URL")
    bad = [u for u in urls if not u.startswith(("http://", "https://", "ws://", "wss://"))]
    if bad:
        raise ConfigError(f"{RPC_KEY}: {bad[0]!r} is not an http(s) or ws(s) URL")
    return urls
