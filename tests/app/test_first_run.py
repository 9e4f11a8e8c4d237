"""The wizard's services without the screens: payout parsing and the config file it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortensor_desktop.config import load_config
from cortensor_desktop.tui.backends.first_run import Choices, Overrides, parse_payout
from tests.ui.conftest import laptop_first_run


def test_payout_is_checksummed_or_refused_in_one_line() -> None:
    lower = "0x" + "ab" * 20
    assert parse_payout(lower) == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert parse_payout("  ") == ""
    with pytest.raises(ValueError, match="40 hex digits"):
        parse_payout("0x1234")
    with pytest.raises(ValueError, match="checksum"):
        parse_payout("0xABABaBaBABabABabAbAbABAbABabababaBaBABaB")  # one letter's case flipped


def test_write_config_keeps_the_files_keys_and_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = laptop_first_run(tmp_path)
    setup.config_path.parent.mkdir(parents=True)
    setup.config_path.write_text("[policy]\nnodes_on_host = 2\n", encoding="utf-8")
    monkeypatch.setenv("CORTENSOR_LOGGING__LEVEL", "debug")
    choices = Choices(
        overrides=Overrides(model="smollm2-135m-instruct", ctx=4096, gpu_layers=0),
        network="local",
        payout_address="0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB",
    )
    setup.write_config(choices)
    config = load_config(setup.config_path, environ={}).config
    assert config.policy.nodes_on_host == 2  # the user's own edit survives
    assert config.logging.level == "info"  # the environment is not baked into the file
    assert (config.fit.model, config.fit.ctx, config.fit.gpu_layers) == (
        "smollm2-135m-instruct",
        4096,
        0,
    )
    assert config.fit.threads == 0 and config.fit.quant == ""
    assert config.network.profile == "local"
    assert config.wallet.payout == choices.payout_address
    assert not list(setup.config_path.parent.glob("*.wizard"))  # no temporary left behind
