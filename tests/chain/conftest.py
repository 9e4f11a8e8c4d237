"""Chain fixtures: one embedded chain and (lazily) one anvil per test run, reverted per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.devnet import (
    AnvilProcess,
    EmbeddedChain,
    LocalDevnet,
    deploy_on_anvil,
    find_anvil,
    rpc,
    start_embedded,
)
from chain.errors import DevnetError


@pytest.fixture(scope="session")
def _embedded_session() -> EmbeddedChain:
    return start_embedded(oracles=2)


@pytest.fixture
def embedded(_embedded_session: EmbeddedChain) -> Iterator[EmbeddedChain]:
    """The shared in-process chain, rolled back after each test (3 ms instead of a redeploy)."""
    snapshot = _embedded_session.snapshot()
    yield _embedded_session
    _embedded_session.revert(snapshot)


@pytest.fixture(scope="session")
def _anvil_session() -> Iterator[AnvilProcess]:
    try:
        find_anvil()
    except DevnetError as exc:
        pytest.fail(f"anvil missing (run npm ci): {exc}")
    with AnvilProcess() as anvil:
        yield anvil


@pytest.fixture(scope="session")
def _anvil_network(_anvil_session: AnvilProcess) -> LocalDevnet:
    return deploy_on_anvil(_anvil_session, oracles=1)


@pytest.fixture
def anvil(_anvil_session: AnvilProcess, _anvil_network: LocalDevnet) -> Iterator[LocalDevnet]:
    """The one anvil of this run with the network deployed, rolled back after each test."""
    web3 = _anvil_session.backend().web3
    snapshot = rpc(web3, "evm_snapshot")
    yield _anvil_network
    rpc(web3, "evm_revert", snapshot)
