"""Two oracles: when the leader dies mid-session, the other takes over and finishes it, once.

Nodes are stepped by hand; the leader "dies" by never being stepped again (its process would be
gone), so only the chain and the standby's own view of the events remain.
"""

from __future__ import annotations

import time

from chain.events import EventCursor
from chain.wrappers import SessionState
from tests.node.conftest import step_until

GRACE_S = 8


def test_standby_oracle_takes_over_a_dead_leader_and_ends_the_session_once(make_network) -> None:
    network = make_network(miners=2, threads=False, oracles=2, leader_grace_s=GRACE_S)
    leader, standby = network.oracles
    miners = network.miners
    cognitive = standby.client.cognitive
    assert standby.client.registry.leader() == leader.address

    step_until(lambda: int(cognitive.call("sessionCount")) >= 1, [leader, standby, *miners])
    step_until(lambda: cognitive.state(1) >= SessionState.PRECOMMIT, [leader, standby, *miners])
    died_at = time.monotonic()  # the leader is never stepped again

    step_until(lambda: standby.sessions_ended >= 1, [standby, *miners], timeout_s=GRACE_S * 10)
    assert standby.client.registry.leader() == standby.address
    assert time.monotonic() - died_at >= GRACE_S * 0.75  # not before the grace period
    ended = EventCursor("Cognitive", cognitive.contract, "SessionEnded", 0).poll()
    assert [int(e.args["id"]) for e in ended].count(1) == 1
    scored = EventCursor("Cognitive", cognitive.contract, "MinerScored", 0).poll()
    assert {bool(e.args["passed"]) for e in scored if int(e.args["id"]) == 1} == {True}
