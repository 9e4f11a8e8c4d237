"""Network profiles: which chain to talk to, how, and where its contracts are.

`embedded` is built in (an in-process chain started fresh each run). Every other profile is a
TOML file `<config>/networks/<name>.toml`; `devnet up` writes `local.toml`. Contract addresses
live in these files (or a JSON file they name), never in code, so a redeployed network is a
profile edit, not a release.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortensor_desktop.config import ConfigError

EMBEDDED = "embedded"
LOCAL = "local"
_PROFILE_KEYS = frozenset({"chain_id", "rpc_urls", "contracts", "contracts_file", "description"})


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    embedded: bool
    chain_id: int | None = None
    rpc_urls: tuple[str, ...] = ()
    contracts: dict[str, str] = field(default_factory=dict)
    description: str = ""


def profile_file(profiles_dir: Path, name: str) -> Path:
    return profiles_dir / f"{name}.toml"


def load_profile(profiles_dir: Path, name: str) -> NetworkProfile:
    if name == EMBEDDED:
        return NetworkProfile(
            name=EMBEDDED, embedded=True, description="in-process chain, fresh each run"
        )
    path = profile_file(profiles_dir, name)
    if not path.exists():
        hint = " (run `cortensor-desktop devnet up` first)" if name == LOCAL else ""
        raise ConfigError(f"network profile '{name}' not found: no file {path}{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read network profile: {exc}") from None
    return parse_profile_text(name, text, path)


def parse_profile_text(name: str, text: str, path: Path) -> NetworkProfile:
    """A profile file's text, checked (the Settings screen checks an edit before writing it)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot read network profile: {exc}") from None
    return _profile_from_raw(name, raw, path)


def _profile_from_raw(name: str, raw: dict[str, Any], path: Path) -> NetworkProfile:
    unknown = sorted(set(raw) - _PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'; expected {sorted(_PROFILE_KEYS)}")
    chain_id = raw.get("chain_id")
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        raise ConfigError(f"{path}: key 'chain_id': expected a positive integer, got {chain_id!r}")
    urls = raw.get("rpc_urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ConfigError(f"{path}: key 'rpc_urls': expected a non-empty list of URLs")
    contracts = _contracts(raw, path)
    return NetworkProfile(
        name=name,
        embedded=False,
        chain_id=chain_id,
        rpc_urls=tuple(urls),
        contracts=contracts,
        description=str(raw.get("description", "")),
    )


def _contracts(raw: dict[str, Any], path: Path) -> dict[str, str]:
    inline = raw.get("contracts", {})
    if not isinstance(inline, dict):
        raise ConfigError(f"{path}: key 'contracts': expected a table of name = address")
    contracts = {str(k): str(v) for k, v in inline.items()}
    file_name = raw.get("contracts_file")
    if file_name:
        file_path = (path.parent / str(file_name)).resolve()
        try:
            loaded = json.loads(file_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"{path}: key 'contracts_file': cannot read {file_path}: {exc}"
            ) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file_path}: expected a JSON object of name: address")
        contracts.update({str(k): str(v) for k, v in loaded.items()})
    return contracts


def list_profiles(profiles_dir: Path) -> list[str]:
    names = [EMBEDDED]
    if profiles_dir.is_dir():
        names += sorted(p.stem for p in profiles_dir.glob("*.toml") if p.stem != EMBEDDED)
    return names
