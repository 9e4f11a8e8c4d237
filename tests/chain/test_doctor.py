"""`doctor` against real setups: the embedded default, a devnet on anvil, a profile that lies
about its chain id, a dead RPC, and a bug-report bundle that must leak no secret."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from eth_account import Account

from chain.devnet import LocalDevnet
from chain.wallet import import_private_key
from tests.conftest import run_cli

CHEAP_SCRYPT_N = 2**4  # test wallets only: the standard cost takes 0.7 s and 256 MiB


def _checks(result_stdout: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(result_stdout)["checks"]}


def _profile(
    home: Path, name: str, chain_id: int, rpc_urls: list[str], contracts: dict[str, str]
) -> None:
    networks = home / "config" / "networks"
    networks.mkdir(parents=True, exist_ok=True)
    lines = [f"chain_id = {chain_id}", f"rpc_urls = {json.dumps(rpc_urls)}", "[contracts]"]
    lines += [f'{k} = "{v}"' for k, v in contracts.items()]
    (networks / f"{name}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_doctor_on_the_embedded_default_runs_every_check(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "home", "doctor", "--json")
    assert result.returncode == 0, result.stderr
    checks = _checks(result.stdout)
    assert list(checks) == [
        "config",
        "self-test",
        "rpc",
        "contracts",
        "gas",
        "keyring",
        "proxy",
        "status-api",
        "models",
        "clock",
        "disk",
    ]
    assert checks["self-test"]["level"] == "ok"
    assert checks["rpc"]["level"] == "info"


def test_doctor_on_a_devnet_checks_chain_id_protocol_gas_and_clock(
    anvil: LocalDevnet, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _profile(home, "dev", anvil.chain_id, [anvil.rpc_url], anvil.contracts)
    good = run_cli(home, "--network", "dev", "doctor", "--quick", "--json")
    checks = _checks(good.stdout)
    assert checks["rpc"]["level"] == "ok", checks["rpc"]
    assert checks["contracts"]["level"] == "ok", checks["contracts"]
    assert checks["clock"]["level"] in ("ok", "warning")
    assert checks["gas"]["level"] == "warning"  # no wallet in this home yet
    assert good.returncode == 0, good.stderr

    # A profile that names the wrong chain, plus a dead second RPC: one line each, exit 1.
    _profile(home, "liar", anvil.chain_id + 1, [anvil.rpc_url], anvil.contracts)
    bad = run_cli(home, "--network", "liar", "doctor", "--quick")
    assert bad.returncode == 1
    assert (
        f"answers for chain {anvil.chain_id}, the profile says {anvil.chain_id + 1}" in bad.stdout
    )
    assert "Traceback" not in bad.stdout + bad.stderr


def test_doctor_gas_error_names_the_empty_address(anvil: LocalDevnet, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _profile(home, "dev", anvil.chain_id, [anvil.rpc_url], anvil.contracts)
    key = Account.create().key.hex()
    info = import_private_key(home / "data" / "keystore", key, "pass phrase", CHEAP_SCRYPT_N)
    result = run_cli(home, "--network", "dev", "doctor", "--quick", "--json")
    gas = _checks(result.stdout)["gas"]
    assert result.returncode == 1 and gas["level"] == "error"
    assert info.address in str(gas["message"]) and info.address in str(gas["remedy"])


def test_the_bundle_holds_the_report_and_no_secret(anvil: LocalDevnet, tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret_rpc = f"{anvil.rpc_url}/v2/SECRETAPIKEY123"
    _profile(home, "dev", anvil.chain_id, [anvil.rpc_url, secret_rpc], anvil.contracts)
    key = Account.create().key.hex()
    passphrase = "correct horse battery staple"
    import_private_key(home / "data" / "keystore", key, passphrase, CHEAP_SCRYPT_N)
    (home / "data" / "api-token").write_text("tok-abcdef0123456789", encoding="utf-8")
    (home / "config" / "config.toml").write_text('[network]\nprofile = "dev"\n', encoding="utf-8")
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "cortensor-desktop.log").write_text(
        f"INFO loaded key 0x{key}\nINFO rpc {secret_rpc} slow\nINFO passphrase={passphrase}\n",
        encoding="utf-8",
    )
    bundle = tmp_path / "report.tar.gz"
    result = run_cli(home, "doctor", "--quick", "--bundle", str(bundle))
    assert bundle.is_file(), result.stderr
    assert bundle.stat().st_mode & 0o777 == 0o600
    with tarfile.open(bundle) as archive:
        names = sorted(m.name.split("/", 1)[1] for m in archive.getmembers())
        text = "".join(
            archive.extractfile(m).read().decode()
            for m in archive.getmembers()  # type: ignore[union-attr]
        )
    assert names == sorted(
        [
            "doctor.json",
            "config.json",
            "network.json",
            "versions.json",
            "profile.json",
            "log-tail.txt",
        ]
    )
    for secret in (key, key[:40], passphrase, "tok-abcdef0123456789", "SECRETAPIKEY123"):
        assert secret not in text, secret
    assert '"hardware"' in text and "llama-cpp-python" in text and "rpc" in text


def test_mask_hides_secret_named_values_and_url_paths() -> None:
    from cortensor_desktop.doctor.bundle import mask
    from cortensor_desktop.logs import REDACTED

    masked = mask(
        {"router": {"api_token": "tok-1", "rpc": "https://rpc.example/v2/KEY9", "port": 9}},
    )
    assert masked == {
        "router": {"api_token": REDACTED, "rpc": "https://rpc.example/...", "port": 9}
    }


def test_a_broken_config_is_the_doctors_first_finding(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("[nonsense]\nx = 1\n", encoding="utf-8")
    result = run_cli(home, "doctor", "--quick", "--json")
    assert result.returncode == 1, result.stderr
    checks = _checks(result.stdout)
    assert checks["config"]["level"] == "error" and "nonsense" in str(checks["config"]["message"])
    assert checks["models"]["level"] == "info"  # skipped: it needs the config


def test_doctor_names_installed_models_nobody_published_a_hash_for(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pulled = run_cli(home, "models", "pull", "all-minilm-l6-v2-22m")
    assert pulled.returncode == 0, pulled.stderr
    result = run_cli(home, "doctor", "--quick", "--json")
    models = _checks(result.stdout)["models"]
    assert models["level"] == "info", models
    assert models["facts"]["unverified"] == ["all-minilm-l6-v2-22m F16"]  # type: ignore[index]
    assert "no published sha256" in str(models["message"])
