"""The doctor's checks. Each takes what it needs and returns a `Check`; none raises.

A check that cannot tell (no wallet yet, the embedded network) says so at INFO level instead of
guessing. Remote calls are bounded by short timeouts so a dead RPC costs seconds, not minutes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.doctor import Check, Level

if TYPE_CHECKING:
    from cortensor_desktop.cli.context import AppContext

# Gas a miner spends per network task (precommit + commit + a share of pings), measured on the
# devnet; the runway divides the balance by it at the chain's current gas price.
GAS_PER_TASK = 250_000
RUNWAY_WARN_TASKS = 200
CLOCK_SKEW_WARN_S = 120.0
DISK_MARGIN = 1.1  # free space wanted beyond the model's size (partial file, verification)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY")

CheckFn = Callable[["AppContext"], Check]


def guarded(name: str, check: CheckFn) -> CheckFn:
    """A check that raised is reported as its own error, never the doctor's crash."""

    def run(ctx: AppContext) -> Check:
        from chain.rpc import scrub_urls

        try:
            return check(ctx)
        except Exception as exc:  # the doctor reports every failure, whatever its type
            message = scrub_urls(f"{name} could not be checked: {exc}")
            return Check(
                name, Level.ERROR, message, "see the message; `--log-level debug` for more"
            )

    return run


def check_self_test(ctx: AppContext) -> Check:
    from cortensor_desktop.selftest import run_self_test

    report = run_self_test(home=ctx.paths.data_dir.parent)
    failed = [r for r in report.steps if not r.ok]
    facts = {"steps": [r.to_json() for r in report.steps]}
    if failed:
        names = ", ".join(f"{r.name} ({r.detail})" for r in failed)
        return Check(
            "self-test",
            Level.ERROR,
            f"offline self-test failed: {names}",
            "run `cortensor-desktop --self-test` for details; reinstall if a shipped "
            "file is missing",
            facts,
        )
    return Check("self-test", Level.OK, f"{len(report.steps)} offline steps passed", facts=facts)


def check_rpcs(ctx: AppContext) -> Check:
    from chain.rpc import public_url, scrub_urls

    profile = ctx.network
    if profile.embedded:
        return Check("rpc", Level.INFO, "embedded network: an in-process chain, no RPC to reach")
    results: dict[str, Any] = {}
    problems: list[str] = []
    for url in profile.rpc_urls:
        shown = public_url(url)
        try:
            chain_id = _chain_id(url)
        except Exception as exc:
            problems.append(f"{shown} does not answer ({scrub_urls(str(exc))})")
            results[shown] = None
            continue
        results[shown] = chain_id
        if profile.chain_id is not None and chain_id != profile.chain_id:
            problems.append(
                f"{shown} answers for chain {chain_id}, the profile says {profile.chain_id}"
            )
    if not problems:
        return Check(
            "rpc",
            Level.OK,
            f"{len(results)} RPC(s) on chain {profile.chain_id}",
            facts={"rpcs": results},
        )
    level = Level.ERROR if len(problems) == len(profile.rpc_urls) else Level.WARNING
    return Check(
        "rpc",
        level,
        "; ".join(problems),
        "fix or remove the URL in the network profile (`config path` shows where)",
        {"rpcs": results},
    )


def _chain_id(url: str) -> int:
    from web3 import Web3

    from chain.rpc import FailoverProvider, RetryPolicy

    policy = RetryPolicy(rounds=1, backoff_s=0.0, request_timeout_s=5.0)
    return int(Web3(FailoverProvider([url], policy)).eth.chain_id)


def check_contracts(ctx: AppContext) -> Check:
    from chain.artifacts import PROTOCOL_VERSION

    if ctx.network.embedded:
        return Check("contracts", Level.INFO, "embedded network: deployed fresh by this app")
    client = _client(ctx)
    deployed = client.registry.protocol_version()
    if deployed != PROTOCOL_VERSION:
        return Check(
            "contracts",
            Level.ERROR,
            f"the network runs protocol {deployed}, this app speaks {PROTOCOL_VERSION}",
            "update the app (or join a network of this version)",
            {"deployed": deployed, "app": PROTOCOL_VERSION},
        )
    return Check(
        "contracts",
        Level.OK,
        f"protocol version {deployed}, as this app",
        facts={"deployed": deployed},
    )


def _client(ctx: AppContext) -> Any:
    from chain.client import connect
    from chain.rpc import RetryPolicy

    profile = ctx.network
    policy = RetryPolicy(rounds=1, backoff_s=0.0, request_timeout_s=5.0)
    return connect(profile.chain_id or 0, profile.rpc_urls, profile.contracts, policy=policy)


def check_gas(ctx: AppContext) -> Check:
    from chain.wallet import wallet_info

    if ctx.network.embedded:
        return Check("gas", Level.INFO, "embedded network: its accounts are funded in process")
    try:
        address = wallet_info(ctx.paths.keystore_dir).address
    except Exception:
        return Check(
            "gas",
            Level.WARNING,
            "no wallet in this home yet",
            "create one: `cortensor-desktop wallet new`",
        )
    web3 = _client(ctx).web3
    balance = int(web3.eth.get_balance(address))
    price = max(int(web3.eth.gas_price), 1)
    runway = balance // (price * GAS_PER_TASK)
    facts = {
        "address": address,
        "balance_wei": balance,
        "gas_price_wei": price,
        "runway_tasks": runway,
    }
    low = ctx.config.alerts.low_gas_wei
    if balance == 0:
        return Check("gas", Level.ERROR, f"{address} has no gas", f"send ETH to {address}", facts)
    if balance < low or runway < RUNWAY_WARN_TASKS:
        return Check(
            "gas",
            Level.WARNING,
            f"gas for about {runway} tasks at the current price",
            f"top up {address} before it runs dry",
            facts,
        )
    return Check("gas", Level.OK, f"gas for about {runway} tasks at the current price", facts=facts)


def check_keyring(ctx: AppContext) -> Check:
    from chain.passphrase import secure_keyring

    backend = secure_keyring()
    if backend is None:
        return Check(
            "keyring",
            Level.WARNING,
            "no secure OS keyring: the passphrase cannot be remembered safely",
            "use --passphrase-file (mode 0600) or CORTENSOR_PASSPHRASE for services",
        )
    return Check("keyring", Level.OK, f"secure keyring: {type(backend).__name__}")


def check_proxy(ctx: AppContext) -> Check:
    from chain.rpc import public_url

    found = {name: public_url(os.environ[name]) for name in PROXY_VARIABLES if os.environ.get(name)}
    if not found:
        return Check("proxy", Level.OK, "no HTTP proxy in the environment")
    return Check(
        "proxy",
        Level.INFO,
        "remote RPCs and downloads go through "
        + ", ".join(sorted(set(found.values())))
        + "; this machine's own servers never do",
        facts={"variables": found},
    )


def check_status_api(ctx: AppContext) -> Check:
    from cortensor_desktop.service.attach import NodeApi
    from cortensor_desktop.service.status_api import API_FILE_NAME

    api_file = ctx.paths.data_dir / API_FILE_NAME
    if not api_file.exists():
        return Check("status-api", Level.INFO, "no node is running in this home")
    try:
        summary = NodeApi.from_api_file(api_file).summary(timeout_s=3.0)
    except Exception as exc:
        return Check(
            "status-api",
            Level.WARNING,
            f"{api_file} is there but the node does not answer ({exc})",
            "the node stopped or was killed: start it again",
        )
    return Check(
        "status-api",
        Level.OK,
        f"the running node answers: {summary.get('state')}",
        facts={"state": summary.get("state")},
    )


def check_models(ctx: AppContext) -> Check:
    from engine.models.store import ModelStore

    results = ModelStore(ctx.models_dir).verify()
    bad = [r for r in results if not r.ok]
    facts = {"checked": len(results), "failed": [f"{r.model_id} {r.quant}" for r in bad]}
    if bad:
        names = "; ".join(f"{r.model_id} {r.quant}: {r.message}" for r in bad)
        return Check(
            "models",
            Level.ERROR,
            names,
            "remove and pull again: `models rm ID` then `models pull ID`",
            facts,
        )
    if not results:
        return Check(
            "models",
            Level.WARNING,
            "no model installed",
            "`cortensor-desktop models pull ID` (or let `run` install the default)",
            facts,
        )
    unverified = [f"{r.model_id} {r.quant}" for r in results if r.hash_source != "catalogue"]
    facts["unverified"] = unverified
    verified = f"{len(results)} installed model file(s) intact"
    if unverified:
        # Intact against their first download (or GGUF structure only): nobody published a
        # sha256 to check them against. Worth knowing, not an error.
        return Check(
            "models",
            Level.INFO,
            f"{verified}; unverified (no published sha256): {', '.join(unverified)}",
            facts=facts,
        )
    return Check("models", Level.OK, f"{verified}, each against its published sha256", facts=facts)


def check_clock(ctx: AppContext) -> Check:
    if ctx.network.embedded:
        return Check("clock", Level.INFO, "embedded network: the chain uses this machine's clock")
    block = _client(ctx).web3.eth.get_block("latest")
    skew = time.time() - float(block["timestamp"])
    facts = {"skew_s": round(skew, 1), "block": int(block["number"])}
    if abs(skew) > CLOCK_SKEW_WARN_S:
        return Check(
            "clock",
            Level.WARNING,
            f"this clock and the chain's latest block differ by {skew:.0f} s",
            "sync the clock (NTP); a long gap also means the RPC lags behind",
            facts,
        )
    return Check(
        "clock", Level.OK, f"within {abs(skew):.0f} s of the chain's latest block", facts=facts
    )


def check_disk(ctx: AppContext) -> Check:
    from engine.models.store import ModelStore

    store = ModelStore(ctx.models_dir)
    entry = store.default_chat_model()
    wanted = ctx.config.fit.model or entry.id
    target = next((m for m in store.catalogue.models if m.id == wanted), entry)
    folder = ctx.models_dir if ctx.models_dir.exists() else _existing_parent(ctx.models_dir)
    free = shutil.disk_usage(folder).free
    if store.is_installed(target.id):
        return Check(
            "disk",
            Level.OK,
            f"{target.id} is installed; {free // 2**30} GiB free",
            facts={"free_bytes": free},
        )
    size = max((q.size_bytes or 0 for q in target.quants), default=0)
    facts = {"model": target.id, "needed_bytes": size, "free_bytes": free}
    if size and free < size * DISK_MARGIN:
        return Check(
            "disk",
            Level.ERROR,
            f"{target.id} needs {size // 2**20} MiB, {free // 2**20} MiB free in {folder}",
            "free space, or set [models] dir to a larger disk",
            facts,
        )
    return Check("disk", Level.OK, f"room for {target.id} ({free // 2**30} GiB free)", facts=facts)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


ONLINE_CHECKS: tuple[tuple[str, CheckFn], ...] = (
    ("rpc", check_rpcs),
    ("contracts", check_contracts),
    ("gas", check_gas),
    ("keyring", check_keyring),
    ("proxy", check_proxy),
    ("status-api", check_status_api),
    ("models", check_models),
    ("clock", check_clock),
    ("disk", check_disk),
)


def check_config(ctx: AppContext) -> Check:
    from cortensor_desktop.config import ConfigError

    try:
        ctx.loaded_config  # noqa: B018 (loading is the check)
        profile = ctx.network
    except ConfigError as exc:
        return Check(
            "config",
            Level.ERROR,
            str(exc),
            "fix the file (`cortensor-desktop config path` shows where), or move it "
            "aside to start from the defaults",
        )
    return Check(
        "config",
        Level.OK,
        f"{ctx.config_path.name} is valid; network {profile.name}",
        facts={"path": str(ctx.config_path), "network": profile.name},
    )


def run_checks(ctx: AppContext, offline: bool = True) -> list[Check]:
    """Every check in order; `offline=False` skips the (slower) self-test. A broken config is
    reported first, and the checks that need it say they were skipped."""
    checks = [check_config(ctx)]
    if offline:
        checks.append(guarded("self-test", check_self_test)(ctx))
    for name, fn in ONLINE_CHECKS:
        if checks[0].level is Level.ERROR:
            checks.append(Check(name, Level.INFO, "skipped: the config must be fixed first"))
        else:
            checks.append(guarded(name, fn)(ctx))
    return checks
