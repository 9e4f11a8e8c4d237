"""`doctor --bundle FILE`: one redacted archive to attach to a bug report.

What goes in: the doctor's checks, the config (every secret-looking value masked, RPC URLs cut to
scheme://host:port), the network profile (the same), versions, the hardware profile and
recommendation, and the last log lines through the log redactor. What never does: the keystore,
the API token, a passphrase file, the database. A test builds a home full of secrets and greps
the archive for each.
"""

from __future__ import annotations

import io
import json
import platform
import re
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chain.rpc import scrub_urls
from cortensor_desktop import __version__
from cortensor_desktop.doctor import Check
from cortensor_desktop.logs import LOG_FILE_NAME, REDACTED, redact

if TYPE_CHECKING:
    from cortensor_desktop.cli.context import AppContext

LOG_LINES = 500
# Config keys whose value is a secret, or names one, whatever section they are in.
_SECRET_KEY = re.compile(r"pass|secret|token|private|key|mnemonic|seed", re.IGNORECASE)


def mask(value: Any, key: str = "") -> Any:
    """A config or profile value with secrets masked and URLs cut to scheme://host:port."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and value:
            return REDACTED
        return redact(scrub_urls(value))
    return value


def _toml_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        masked: dict[str, Any] = mask(tomllib.loads(path.read_text(encoding="utf-8")))
        return masked
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {"unreadable": f"{path.name}: {exc}"}


def _versions() -> dict[str, Any]:
    from cortensor_desktop.reports import llama_backend
    from profiler.probe import probe_llama_build

    return {
        "app": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "llama_cpp": llama_backend(probe_llama_build()),
    }


def _log_tail(log_dir: Path) -> str:
    path = log_dir / LOG_FILE_NAME
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_LINES:]
    return "\n".join(redact(scrub_urls(line)) for line in lines) + "\n"


def _profile_document(ctx: AppContext) -> dict[str, Any]:
    """What `profile --json` prints: the hardware and the fit's recommendation (or why none)."""
    from cortensor_desktop.cli.commands.profile_cmd import stored_benchmarks
    from profiler.catalogue import load_catalogue
    from profiler.fit import recommend
    from profiler.probe import probe

    try:
        hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    except Exception as exc:  # a broken probe is itself worth reporting
        return {"hardware": None, "error": str(exc)}
    document: dict[str, Any] = {"hardware": hardware.to_json()}
    try:
        settings = ctx.config.fit.to_fit_settings()
        rec = recommend(hardware, load_catalogue(), settings, stored_benchmarks(ctx))
        document["recommendation"] = rec.to_json()
    except Exception as exc:
        document["recommendation"], document["error"] = None, str(exc)
    return document


def _network(ctx: AppContext) -> dict[str, Any]:
    try:
        profile = ctx.network
    except Exception as exc:  # a broken config or profile: what it says is the report
        return {"error": str(exc)}
    masked: dict[str, Any] = mask(
        {
            "name": profile.name,
            "embedded": profile.embedded,
            "chain_id": profile.chain_id,
            "rpc_urls": list(profile.rpc_urls),
            "contracts": dict(profile.contracts),
        }
    )
    return masked


def write_bundle(ctx: AppContext, checks: Iterable[Check], target: Path) -> list[str]:
    """Write the archive (tar.gz) to `target`; returns the member names."""
    members: dict[str, str] = {
        "doctor.json": json.dumps([c.to_json() for c in checks], indent=2, default=str),
        "config.json": json.dumps(_toml_file(ctx.config_path), indent=2, default=str),
        "network.json": json.dumps(_network(ctx), indent=2, default=str),
        "versions.json": json.dumps(_versions(), indent=2),
        "profile.json": json.dumps(_profile_document(ctx), indent=2, default=str),
        "log-tail.txt": _log_tail(ctx.paths.log_dir),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for name, text in members.items():
            data = redact(scrub_urls(text)).encode("utf-8")
            info = tarfile.TarInfo(f"cortensor-doctor/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            archive.addfile(info, io.BytesIO(data))
    partial.chmod(0o600)
    partial.replace(target)
    return list(members)
