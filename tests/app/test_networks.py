"""Network profiles: addresses come from profile files, and bad files say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cortensor_desktop.config import ConfigError
from cortensor_desktop.networks import list_profiles, load_profile


def test_embedded_is_built_in(tmp_path: Path) -> None:
    profile = load_profile(tmp_path, "embedded")
    assert profile.embedded
    assert list_profiles(tmp_path) == ["embedded"]


def test_custom_profile_with_failover_urls_and_contracts_file(tmp_path: Path) -> None:
    (tmp_path / "addrs.json").write_text(json.dumps({"NodeRegistry": "0x" + "11" * 20}))
    (tmp_path / "testnet.toml").write_text(
        'chain_id = 421614\nrpc_urls = ["http://127.0.0.1:1", "http://127.0.0.1:2"]\n'
        'contracts_file = "addrs.json"\n'
    )
    profile = load_profile(tmp_path, "testnet")
    assert profile.chain_id == 421614
    assert profile.rpc_urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert profile.contracts["NodeRegistry"] == "0x" + "11" * 20
    assert list_profiles(tmp_path) == ["embedded", "testnet"]


def test_missing_local_profile_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="devnet up"):
        load_profile(tmp_path, "local")


@pytest.mark.parametrize(
    "body",
    [
        'chain_id = "x"\nrpc_urls=["u"]',
        "chain_id = 5\nrpc_urls = []",
        'chain_id = 5\nrpc_urls=["u"]\nextra = 1',
    ],
)
def test_bad_profiles_are_config_errors(tmp_path: Path, body: str) -> None:
    (tmp_path / "bad.toml").write_text(body)
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_profile(tmp_path, "bad")


def test_unknown_network_is_exit_3(cli) -> None:
    result = cli("config", "show", "--network", "nowhere")
    # config show does not need the profile to load; it only reports the name
    assert result.returncode == 0
