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
_PROFILE_KEYS = frozenset(
    {
        "chain_id",
        "rpc_urls",
        "contracts",
        "contracts_file",
        "description",
        "deploy_block",
        "deployer",
        "signed_profile",
    }
)
SIGNED_SUFFIX = ".signed.json"


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    embedded: bool
    chain_id: int | None = None
    rpc_urls: tuple[str, ...] = ()
    contracts: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # The block the contracts were deployed in: event reads start there, never at block 0.
    deploy_block: int = 0
    # Set on a profile installed from a signed one (`network join` or `network deploy`).
    deployer: str = ""
    signed_profile: str = ""


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
    deploy_block = raw.get("deploy_block", 0)
    if not isinstance(deploy_block, int) or isinstance(deploy_block, bool) or deploy_block < 0:
        raise ConfigError(
            f"{path}: key 'deploy_block': expected a block number, got {deploy_block!r}"
        )
    return NetworkProfile(
        name=name,
        embedded=False,
        chain_id=chain_id,
        rpc_urls=tuple(urls),
        contracts=contracts,
        description=str(raw.get("description", "")),
        deploy_block=deploy_block,
        deployer=str(raw.get("deployer", "")),
        signed_profile=str(raw.get("signed_profile", "")),
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


def signed_profile_path(profiles_dir: Path, profile: NetworkProfile) -> Path | None:
    return profiles_dir / profile.signed_profile if profile.signed_profile else None


def list_profiles(profiles_dir: Path) -> list[str]:
    names = [EMBEDDED]
    if profiles_dir.is_dir():
        names += sorted(p.stem for p in profiles_dir.glob("*.toml") if p.stem != EMBEDDED)
    return names


# ---- signed profiles: installed by `network join` and `network deploy` ----

RESERVED_NAMES = frozenset({EMBEDDED, LOCAL})


def installed_profiles(profiles_dir: Path) -> list[NetworkProfile]:
    """Every profile file that loads (a broken one is left to `network show` to report)."""
    found: list[NetworkProfile] = []
    for name in list_profiles(profiles_dir):
        try:
            found.append(load_profile(profiles_dir, name))
        except ConfigError:
            continue
    return found


def trusted_deployers(profiles_dir: Path) -> list[str]:
    """Deployers whose signed profiles this home installed: a profile they sign is trusted."""
    return sorted({p.deployer for p in installed_profiles(profiles_dir) if p.deployer})


def install_signed_profile(
    profiles_dir: Path, name: str, signed: Any, rpc_urls: tuple[str, ...]
) -> Path:
    """Write `<name>.signed.json` (the verified profile, verbatim) and `<name>.toml` (what the
    app loads), each atomically, the TOML last: until it is renamed into place nothing of the
    profile is visible, and a failure on the way leaves nothing behind."""
    import tomlkit

    from cortensor_desktop.config import write_atomically

    profiles_dir.mkdir(parents=True, exist_ok=True)
    signed_path = profiles_dir / f"{name}{SIGNED_SUFFIX}"
    toml_path = profile_file(profiles_dir, name)
    document = tomlkit.document()
    document.add(
        tomlkit.comment(
            f"installed from a profile signed by {signed.deployer}, checked on chain "
            f"{signed.chain_id}; `cortensor-desktop network show {name}` re-checks it"
        )
    )
    document["description"] = signed.description or f"network {signed.name}"
    document["chain_id"] = signed.chain_id
    document["rpc_urls"] = list(rpc_urls)
    document["deploy_block"] = signed.deploy_block
    document["deployer"] = signed.deployer
    document["signed_profile"] = signed_path.name
    document["contracts"] = dict(signed.contracts)
    write_atomically(signed_path, signed.to_text())
    try:
        write_atomically(toml_path, tomlkit.dumps(document))
    except OSError:
        signed_path.unlink(missing_ok=True)
        raise
    return toml_path


def remove_profile(profiles_dir: Path, name: str) -> list[Path]:
    profile = load_profile(profiles_dir, name)
    removed = [profile_file(profiles_dir, name)]
    signed = signed_profile_path(profiles_dir, profile)
    if signed is not None and signed.exists():
        removed.append(signed)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


MAX_PROFILE_BYTES = 256 * 1024


def fetch_profile_text(url: str, timeout_s: float = 15.0) -> str:
    """A published profile over HTTP(S); at most 256 KiB. ChainError-free: OSError on failure."""
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--from {url}: expected an http:// or https:// URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body = response.read(MAX_PROFILE_BYTES + 1)
    if len(body) > MAX_PROFILE_BYTES:
        raise ValueError(f"{url}: larger than {MAX_PROFILE_BYTES // 1024} KiB: not a profile")
    return str(body.decode("utf-8", errors="replace"))
