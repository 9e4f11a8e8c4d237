"""Commit-reveal of a journaled answer: one path for network and user tasks alike.

The answer and its salt are in the journal (PREPARED) before anything is sent. Then:
    precommit  the hash binding, sent while the chain still waits for it -> PRECOMMITTED
    reveal     the answer and salt, once the commit window is open       -> COMMITTED
and after a restart, an RPC outage or a reorg (`resume`): a precommit the chain already holds is
adopted, never resent (its receipt was lost); one whose window closed is abandoned; one still due
is sent; every precommitted answer is revealed. Each send is guarded by the chain state, so a
reveal is never on chain twice and a binding never changes. Where the state lives and which
function sends differ per kind: engine/node/task_contracts.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chain.wrappers import commitment
from engine import failpoints
from engine.node.miner_chain import MinerChain
from engine.node.task_contracts import TaskContract
from engine.protocol import TaskKind
from engine.state.events import Event, TxStatus
from engine.state.journal import CommitRecord, CommitStage, CommitState, Journal, TaskRef

log = logging.getLogger(__name__)

_REVEALABLE = (CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED, CommitState.COMMIT_SENT)


class CommitReveal:
    def __init__(
        self,
        contracts: dict[TaskKind, TaskContract],
        journal: Journal,
        chain: MinerChain,
        address: str,
        on_revealed: Callable[[TaskRef], None],
    ) -> None:
        self._contracts = contracts
        self._journal = journal
        self._chain = chain
        self._address = address
        self._on_revealed = on_revealed

    def precommit(self, task: TaskRef) -> None:
        """Send the journaled binding's precommit if it is not sent and the chain waits for it."""
        record = self._journal.get(task)
        if record is None or record.state is not CommitState.PREPARED:
            return
        if self._contracts[task.kind].awaits_precommit(task):
            self._send_precommit(task, record)

    def precommit_selected(self, task: TaskRef) -> None:
        """Send the precommit of an answer just prepared for a session that has just selected
        this miner (SessionStarted said so; the chain is not asked again)."""
        record = self._journal.get(task)
        if record is not None:
            self._send_precommit(task, record)

    def reveal(self, task: TaskRef) -> None:
        """Reveal a precommitted answer once the commit window is open."""
        record = self._journal.get(task)
        if record is None or record.state not in _REVEALABLE:
            return
        contract = self._contracts[task.kind]
        if not contract.may_reveal(task):
            return
        answer, salt = record.answer, _salt_bytes(record.salt)
        tx_hash = self._send(task, CommitStage.COMMIT, lambda: contract.commit(task, answer, salt))
        if tx_hash:
            self._journal.mark_landed(task, CommitStage.COMMIT, tx_hash)
            self._on_revealed(task)

    def resume(self) -> None:
        """Send what was prepared but not sent, and reveal what was precommitted."""
        for record in self._journal.pending_precommits():
            self._resume_precommit(record.task)
        for record in self._journal.pending_reveals():
            self.reveal(record.task)

    def _resume_precommit(self, task: TaskRef) -> None:
        contract = self._contracts[task.kind]
        if contract.precommit_landed(task):
            # It landed but its receipt was lost (RPC down, node killed): the chain holds the
            # journal's binding (only this journal knows the salt). Reveal it; never resend.
            log.info(
                "%s %s is on chain already; not sending it again",
                contract.precommitted_event,
                task.key,
            )
            self._journal.mark_landed(task, CommitStage.PRECOMMIT, "")
            self.reveal(task)
            return
        if not contract.precommit_open(task):
            self._journal.abandon(task, contract.closed_note)
            return
        self.precommit(task)  # sends only while the chain still waits for it

    def _send_precommit(self, task: TaskRef, record: CommitRecord) -> None:
        contract = self._contracts[task.kind]
        digest = commitment(
            contract.commitment_id(task), self._address, _salt_bytes(record.salt), record.answer
        )
        tx_hash = self._send(task, CommitStage.PRECOMMIT, lambda: contract.precommit(task, digest))
        if tx_hash:
            self._journal.mark_landed(task, CommitStage.PRECOMMIT, tx_hash)
            if contract.after_precommit_failpoint:
                failpoints.hit(contract.after_precommit_failpoint)

    def _send(self, task: TaskRef, stage: CommitStage, send: Callable[[], str]) -> str | None:
        contract = self._contracts[task.kind]

        def report(status: TxStatus, tx_hash: str | None, detail: str) -> Event:
            return contract.stage_event(task, stage, status, tx_hash, detail)

        return self._chain.transact(send, report)


def _salt_bytes(salt: str) -> bytes:
    return bytes.fromhex(salt.removeprefix("0x"))
