"""The crash-safe journal: what a node has bound, sent and must still send, in the home database.

Everything is keyed by chain id + genesis hash + node address, so a reset devnet (same chain id,
new genesis) or another network never resumes work that belongs elsewhere, and several nodes
sharing one home (the embedded network) keep their own rows.

Commit records (one per task the node answers; network tasks use task_id 0)::

    prepare_commit()   PREPARED        salt + answer written; the precommit may not have left yet
      mark_sent(PRECOMMIT, tx)   PRECOMMIT_SENT
      mark_confirmed(PRECOMMIT)  PRECOMMITTED    the hash binding is on chain
      mark_sent(COMMIT, tx)      COMMIT_SENT
      mark_confirmed(COMMIT)     COMMITTED       done
      mark_landed(stage, tx)     both steps of a stage at once (a send that waited for its receipt)
    abandon()          ABANDONED       the window closed or the session ended; nothing to send
    rewind(to)         PREPARED or PRECOMMITTED   a reorg dropped the precommit or the reveal

The salt and answer are written *before* the precommit is sent: a node killed after sending it
finds them on restart and can still reveal (`pending_reveals`). A record in PREPARED after a
restart may or may not have reached the chain: the engine asks the chain (is my precommit there?)
and resends only if it is not; because the salt is reused (`prepare_commit` is idempotent and
refuses a different answer), a resent precommit is the same binding, never a second one.

Transaction intents (one per logical action, e.g. "network:12:0:precommit")::

    record_intent(key, nonce)  INTENT      recorded before signing/broadcast
    mark_tx_sent(key, hash)    SENT        broadcast accepted by an RPC
    mark_tx_confirmed(key)     CONFIRMED   receipt with status 1
    mark_tx_failed(key)        FAILED      reverted or refused; a new attempt may be recorded
    mark_tx_superseded(key)    SUPERSEDED  another transaction consumed the nonce

On restart `resume_decision` (pure; the withdrawal path in engine/node/earnings.py settles its
open intents with it) turns an intent plus what the chain says (receipt, account nonce, the
mempool) into DONE / FAILED / IN_FLIGHT / NOT_SENT / SUPERSEDED. Because the nonce is fixed before
the first broadcast, resending can at worst land once: nothing is sent twice.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from engine.errors import EngineError
from engine.poi.validation import Verdict
from engine.protocol import TaskKind, TaskRole
from engine.state.database import Database


class JournalError(EngineError):
    """The journal refused a step that would break a guarantee (a second answer, a skip)."""


class CommitStage(StrEnum):
    PRECOMMIT = "precommit"
    COMMIT = "commit"


class CommitState(StrEnum):
    PREPARED = "prepared"
    PRECOMMIT_SENT = "precommit_sent"
    PRECOMMITTED = "precommitted"
    COMMIT_SENT = "commit_sent"
    COMMITTED = "committed"
    ABANDONED = "abandoned"


# The order of the happy path; a step may repeat (a resend) but never go back.
_ORDER = [
    CommitState.PREPARED,
    CommitState.PRECOMMIT_SENT,
    CommitState.PRECOMMITTED,
    CommitState.COMMIT_SENT,
    CommitState.COMMITTED,
]
# The least a record must have reached before each step: a reveal needs its precommit sent (the
# confirmation of the precommit may go unrecorded), a confirmed commit needs the commit sent.
_REQUIRES = {
    CommitState.PRECOMMIT_SENT: CommitState.PREPARED,
    CommitState.PRECOMMITTED: CommitState.PRECOMMIT_SENT,
    CommitState.COMMIT_SENT: CommitState.PRECOMMIT_SENT,
    CommitState.COMMITTED: CommitState.COMMIT_SENT,
}
# What `mark_landed` records per stage: the sent state, then the confirmed one.
_LANDED = {
    CommitStage.PRECOMMIT: (CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED),
    CommitStage.COMMIT: (CommitState.COMMIT_SENT, CommitState.COMMITTED),
}
_FINAL = {CommitState.COMMITTED, CommitState.ABANDONED}
_REVEAL_PENDING = (CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED, CommitState.COMMIT_SENT)


class TxState(StrEnum):
    INTENT = "intent"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class TxResume(StrEnum):
    """What the engine should do with a transaction intent after a restart."""

    DONE = "done"  # confirmed: do not send again
    FAILED = "failed"  # reverted: record the failure; a new attempt is a new decision
    IN_FLIGHT = "in_flight"  # nonce still free, tx broadcast or signed: rebroadcast, then wait
    NOT_SENT = "not_sent"  # nonce still free, nothing signed or the broadcast was lost: send anew
    SUPERSEDED = "superseded"  # nonce used by another tx: check chain state before acting anew


@dataclass(frozen=True)
class ChainKey:
    """Which chain a journal belongs to; the genesis hash tells a reset devnet from the old one."""

    chain_id: int
    genesis_hash: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "genesis_hash", self.genesis_hash.lower())


@dataclass(frozen=True)
class TaskRef:
    kind: TaskKind
    session_id: int
    task_id: int = 0  # network tasks have one task per session

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.session_id}:{self.task_id}"

    def intent_key(self, action: str) -> str:
        """The transaction-intent key of one action on this task, e.g. "user:3:7:precommit"."""
        return f"{self.key}:{action}"


@dataclass(frozen=True)
class CommitRecord:
    task: TaskRef
    role: TaskRole
    state: CommitState
    salt: str
    answer: str
    precommit_tx: str | None
    commit_tx: str | None
    note: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class TxIntent:
    key: str
    attempt: int
    nonce: int
    tx_hash: str | None
    raw_tx: str | None
    state: TxState
    detail: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class EarningRecord:
    """One line of the wallet's history; `kind` is payment, points, withdrawal or gas."""

    at: float
    kind: str
    amount_wei: int = 0
    points: int = 0
    task: TaskRef | None = None
    tx_hash: str | None = None
    note: str = ""


@dataclass(frozen=True)
class VerdictRecord:
    miner: str
    task: TaskRef
    at: float
    passed: bool
    failed_checks: tuple[str, ...]
    top1_agreement: float | None
    cosine: float | None

    @classmethod
    def from_verdict(
        cls, verdict: Verdict, *, miner: str, task: TaskRef, at: float
    ) -> VerdictRecord:
        return cls(
            miner=miner,
            task=task,
            at=at,
            passed=verdict.passed,
            failed_checks=tuple(c.value for c in verdict.failed_checks),
            top1_agreement=verdict.top1_agreement,
            cosine=verdict.cosine,
        )


def new_salt() -> str:
    """32 random bytes as 0x-hex: unguessable, so nobody can brute-force an answer from its hash."""
    return "0x" + secrets.token_hex(32)


def resume_decision(
    intent: TxIntent | None,
    *,
    receipt_ok: bool | None,
    account_nonce: int,
    pending_nonce: int | None = None,
) -> TxResume:
    """Decide a transaction's fate after a restart from the journal and the chain alone.

    `receipt_ok` is the receipt's status for `intent.tx_hash` (None: no receipt found),
    `account_nonce` the account's mined transaction count (the next nonce the chain expects) and
    `pending_nonce`, when known, the count including the RPC's mempool: a transaction of ours
    waiting at the intent's nonce may be this one (IN_FLIGHT, even if the crash came before its
    hash was recorded); none waiting means the broadcast never happened or was lost (NOT_SENT).
    """
    if intent is None:
        return TxResume.NOT_SENT
    if intent.state is TxState.CONFIRMED or receipt_ok is True:
        return TxResume.DONE
    if intent.state is TxState.FAILED or receipt_ok is False:
        return TxResume.FAILED
    if intent.state is TxState.SUPERSEDED or account_nonce > intent.nonce:
        return TxResume.SUPERSEDED
    if pending_nonce is not None:  # the mempool knows better than our record of a broadcast
        return TxResume.IN_FLIGHT if pending_nonce > intent.nonce else TxResume.NOT_SENT
    if intent.state is TxState.SENT or intent.raw_tx:
        return TxResume.IN_FLIGHT
    return TxResume.NOT_SENT


class Journal:
    """One node's journal on one chain, safe to share between the engine's threads."""

    def __init__(self, db: Database, chain: ChainKey, node: str) -> None:
        self.db = db
        self.chain = chain
        self.node = node.lower()
        self._scope = (chain.chain_id, chain.genesis_hash, self.node)

    # --- where an oracle reads the chain from ------------------------------------------------

    def watch_from(self) -> int | None:
        """The block an oracle restarting now reads events from (None: never saved).

        It is the first block of the oldest task or session still open when last saved, so a
        restart rebuilds every open one from its events (an oracle keeps them in memory only).
        """
        value = self.db.cache_get(self._watch_key)
        return int(value) if value is not None else None

    def save_watch_from(self, block: int) -> None:
        self.db.cache_put(self._watch_key, int(block))

    @property
    def _watch_key(self) -> str:
        chain_id, genesis, node = self._scope
        return f"oracle-watch-from:{chain_id}:{genesis}:{node}"

    # --- commit records ---------------------------------------------------------------------

    def prepare_commit(
        self, task: TaskRef, role: TaskRole, answer: str, *, salt: str | None = None
    ) -> str:
        """Bind an answer to a salt before any precommit is sent; returns the salt to hash with.

        Idempotent: asked again for the same task and answer, it returns the stored salt, so a
        resent precommit is the same binding. A different answer is refused (JournalError): the
        first binding may already be on chain.
        """
        with self.db.transaction() as conn:
            existing = self._get(conn, task)
            if existing is not None:
                if existing.answer != answer:
                    raise JournalError(
                        f"task {task.key} already has a different answer bound; "
                        "a second precommit would not match the first"
                    )
                return existing.salt
            chosen = salt or new_salt()
            now = time.time()
            conn.execute(
                "INSERT INTO journal_commits (chain_id, genesis_hash, node, task_kind, session_id,"
                " task_id, role, state, salt, answer, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *self._scope,
                    *_task_cols(task),
                    role.value,
                    CommitState.PREPARED.value,
                    chosen,
                    answer,
                    now,
                    now,
                ),
            )
            return chosen

    def mark_sent(self, task: TaskRef, stage: CommitStage, tx_hash: str) -> CommitRecord:
        """The precommit or commit left (broadcast accepted) with this hash."""
        if stage is CommitStage.PRECOMMIT:
            return self._advance(task, CommitState.PRECOMMIT_SENT, "precommit_tx", tx_hash)
        return self._advance(task, CommitState.COMMIT_SENT, "commit_tx", tx_hash)

    def mark_confirmed(self, task: TaskRef, stage: CommitStage) -> CommitRecord:
        target = (
            CommitState.PRECOMMITTED if stage is CommitStage.PRECOMMIT else CommitState.COMMITTED
        )
        return self._advance(task, target)

    def mark_landed(self, task: TaskRef, stage: CommitStage, tx_hash: str) -> CommitRecord:
        """The precommit or commit is on chain with this hash (sends wait for the receipt, so
        "sent" and "confirmed" come together): `mark_sent` then `mark_confirmed`, in one
        transaction, so no crash leaves the first without the second."""
        sent, confirmed = _LANDED[stage]
        column = "precommit_tx" if stage is CommitStage.PRECOMMIT else "commit_tx"
        with self.db.transaction() as conn:
            record = _reachable(self._require(conn, task), task, sent)
            # The confirmed state needs no more than the sent one, reached here.
            state = max(record.state, confirmed, key=_ORDER.index)
            self._update(conn, task, state, column=column, value=tx_hash)
            return self._require(conn, task)

    def abandon(self, task: TaskRef, note: str) -> CommitRecord:
        """Nothing more will be sent for this task (window closed, session ended, paused)."""
        with self.db.transaction() as conn:
            record = self._require(conn, task)
            if record.state in _FINAL:
                return record
            self._update(conn, task, CommitState.ABANDONED, note=note)
            return self._require(conn, task)

    def rewind(self, task: TaskRef, to: CommitState, note: str) -> CommitRecord:
        """The chain dropped what the journal recorded (a reorg, a chain restored from an older
        save): go back to `to` (PREPARED: the precommit is gone; PRECOMMITTED: the reveal is),
        keeping the salt and answer, so what is sent again is the same binding and the same
        answer. The only step that goes back, and only on the chain's word."""
        if to not in (CommitState.PREPARED, CommitState.PRECOMMITTED):
            raise JournalError(f"a record rewinds to prepared or precommitted, not {to.value}")
        with self.db.transaction() as conn:
            self._require(conn, task)
            self._update(conn, task, to, note=note)
            return self._require(conn, task)

    def recent_commits(self, limit: int = 32) -> list[CommitRecord]:
        """The records changed last, whatever their state (finished ones too), newest first:
        what a reorg may have undone on chain."""
        rows = self.db.query(
            "SELECT * FROM journal_commits WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " ORDER BY updated_at DESC, session_id DESC LIMIT ?",
            (*self._scope, limit),
        )
        return [_commit_record(row) for row in rows]

    def get(self, task: TaskRef) -> CommitRecord | None:
        with self.db.transaction() as conn:
            return self._get(conn, task)

    def pending_precommits(self) -> list[CommitRecord]:
        """Bound but not known to be sent: ask the chain, send the same binding if it is absent."""
        return self._by_state((CommitState.PREPARED,))

    def pending_reveals(self) -> list[CommitRecord]:
        """Precommitted (or revealing) but not confirmed committed: reveal before the deadline."""
        return self._by_state(_REVEAL_PENDING)

    def open_commits(self) -> list[CommitRecord]:
        """Every record not yet committed or abandoned, oldest first."""
        return self._by_state(tuple(s for s in CommitState if s not in _FINAL))

    def _advance(
        self, task: TaskRef, target: CommitState, column: str | None = None, value: str = ""
    ) -> CommitRecord:
        with self.db.transaction() as conn:
            record = _reachable(self._require(conn, task), task, target)
            # Going back (a late confirmation after a resend) keeps the further state.
            self._update(
                conn,
                task,
                max(record.state, target, key=_ORDER.index),
                column=column,
                value=value,
            )
            return self._require(conn, task)

    def _update(
        self,
        conn: sqlite3.Connection,
        task: TaskRef,
        state: CommitState,
        *,
        column: str | None = None,
        value: str = "",
        note: str | None = None,
    ) -> None:
        sets = ["state = ?", "updated_at = ?"]
        params: list[object] = [state.value, time.time()]
        if column is not None:
            sets.append(f"{column} = ?")  # column comes from this module, never from input
            params.append(value)
        if note is not None:
            sets.append("note = ?")
            params.append(note)
        conn.execute(
            f"UPDATE journal_commits SET {', '.join(sets)} WHERE chain_id = ? AND genesis_hash = ?"
            " AND node = ? AND task_kind = ? AND session_id = ? AND task_id = ?",
            (*params, *self._scope, *_task_cols(task)),
        )

    def _get(self, conn: sqlite3.Connection, task: TaskRef) -> CommitRecord | None:
        cursor = conn.execute(
            "SELECT * FROM journal_commits WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " AND task_kind = ? AND session_id = ? AND task_id = ?",
            (*self._scope, *_task_cols(task)),
        )
        cursor.row_factory = sqlite3.Row
        row = cursor.fetchone()
        return _commit_record(row) if row is not None else None

    def _require(self, conn: sqlite3.Connection, task: TaskRef) -> CommitRecord:
        record = self._get(conn, task)
        if record is None:
            raise JournalError(f"task {task.key} has no prepared answer in the journal")
        return record

    def _by_state(self, states: Iterable[CommitState]) -> list[CommitRecord]:
        wanted = [s.value for s in states]
        rows = self.db.query(
            "SELECT * FROM journal_commits WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            f" AND state IN ({', '.join('?' for _ in wanted)}) ORDER BY created_at, session_id",
            (*self._scope, *wanted),
        )
        return [_commit_record(row) for row in rows]

    # --- transaction intents ----------------------------------------------------------------

    def record_intent(
        self, key: str, nonce: int, *, tx_hash: str | None = None, raw_tx: str | None = None
    ) -> TxIntent:
        """Record the nonce (and the signed tx, if already signed) before broadcasting.

        Asked again for a key that is pending or confirmed, it returns the stored intent
        unchanged: the caller must resume that one, not start another. After FAILED or
        SUPERSEDED it records a new attempt.
        """
        with self.db.transaction() as conn:
            existing = self._tx(conn, key)
            if existing is not None and existing.state not in (TxState.FAILED, TxState.SUPERSEDED):
                return existing
            attempt = existing.attempt + 1 if existing is not None else 1
            now = time.time()
            conn.execute(
                "INSERT OR REPLACE INTO journal_txs (chain_id, genesis_hash, node, intent_key,"
                " attempt, nonce, tx_hash, raw_tx, state, detail, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)",
                (
                    *self._scope,
                    key,
                    attempt,
                    nonce,
                    tx_hash,
                    raw_tx,
                    TxState.INTENT.value,
                    now,
                    now,
                ),
            )
            intent = self._tx(conn, key)
            assert intent is not None
            return intent

    def mark_tx_sent(self, key: str, tx_hash: str) -> TxIntent:
        return self._set_tx(key, TxState.SENT, tx_hash=tx_hash)

    def mark_tx_confirmed(self, key: str) -> TxIntent:
        return self._set_tx(key, TxState.CONFIRMED)

    def mark_tx_failed(self, key: str, detail: str) -> TxIntent:
        return self._set_tx(key, TxState.FAILED, detail=detail)

    def mark_tx_superseded(self, key: str, detail: str = "") -> TxIntent:
        return self._set_tx(key, TxState.SUPERSEDED, detail=detail)

    def tx(self, key: str) -> TxIntent | None:
        with self.db.transaction() as conn:
            return self._tx(conn, key)

    def unsettled_txs(self) -> list[TxIntent]:
        """Intents recorded or sent but not settled: resolve each with `resume_decision`."""
        rows = self.db.query(
            "SELECT * FROM journal_txs WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " AND state IN (?, ?) ORDER BY nonce",
            (*self._scope, TxState.INTENT.value, TxState.SENT.value),
        )
        return [_tx_intent(row) for row in rows]

    def highest_nonce(self) -> int | None:
        """The largest nonce this node has journaled, so a restart never reuses one in flight."""
        rows = self.db.query(
            "SELECT MAX(nonce) AS n FROM journal_txs WHERE chain_id = ? AND genesis_hash = ?"
            " AND node = ?",
            self._scope,
        )
        value = rows[0]["n"]
        return int(value) if value is not None else None

    def _set_tx(
        self, key: str, state: TxState, *, tx_hash: str | None = None, detail: str | None = None
    ) -> TxIntent:
        with self.db.transaction() as conn:
            if self._tx(conn, key) is None:
                raise JournalError(f"no transaction intent {key!r} in the journal")
            conn.execute(
                "UPDATE journal_txs SET state = ?, tx_hash = COALESCE(?, tx_hash),"
                " detail = COALESCE(?, detail), updated_at = ? WHERE chain_id = ?"
                " AND genesis_hash = ? AND node = ? AND intent_key = ?",
                (state.value, tx_hash, detail, time.time(), *self._scope, key),
            )
            intent = self._tx(conn, key)
            assert intent is not None
            return intent

    def _tx(self, conn: sqlite3.Connection, key: str) -> TxIntent | None:
        cursor = conn.execute(
            "SELECT * FROM journal_txs WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " AND intent_key = ?",
            (*self._scope, key),
        )
        cursor.row_factory = sqlite3.Row
        row = cursor.fetchone()
        return _tx_intent(row) if row is not None else None

    # --- history: earnings and verdicts -----------------------------------------------------

    def record_earning(self, record: EarningRecord) -> None:
        with self.db.transaction() as conn:
            self._insert_earning(conn, record)

    def _insert_earning(self, conn: sqlite3.Connection, record: EarningRecord) -> None:
        task = _task_cols(record.task) if record.task else (None, None, None)
        conn.execute(
            "INSERT INTO earnings (chain_id, genesis_hash, node, at, kind, amount_wei, points,"
            " task_kind, session_id, task_id, tx_hash, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *self._scope,
                record.at,
                record.kind,
                str(record.amount_wei),
                record.points,
                *task,
                record.tx_hash,
                record.note,
            ),
        )

    def record_earning_once(self, record: EarningRecord) -> bool:
        """Record unless the same line is there (same kind and transaction, or same kind and
        task when there is no transaction): events replayed after a restart count once.
        True when it was recorded."""
        if record.tx_hash is None and record.task is None:
            raise JournalError("a once-only earning needs a transaction hash or a task")
        with self.db.transaction() as conn:
            params: tuple[object, ...]
            if record.tx_hash is not None:
                where, params = "tx_hash = ?", (record.tx_hash.lower(),)
            else:
                assert record.task is not None
                where = "task_kind = ? AND session_id = ? AND task_id = ?"
                params = _task_cols(record.task)
            seen = conn.execute(
                "SELECT 1 FROM earnings WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
                f" AND kind = ? AND {where}",
                (*self._scope, record.kind, *params),
            ).fetchone()
            if seen is not None:
                return False
            tx_hash = record.tx_hash.lower() if record.tx_hash is not None else None
            self._insert_earning(conn, replace(record, tx_hash=tx_hash))
        return True

    def total_of(self, kind: str) -> int:
        """The sum of this node's history lines of one kind, in wei (e.g. all withdrawals)."""
        rows = self.db.query(
            "SELECT amount_wei FROM earnings WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " AND kind = ?",
            (*self._scope, kind),
        )
        return sum(int(row["amount_wei"]) for row in rows)

    def earnings(
        self, since: float | None = None, until: float | None = None
    ) -> list[EarningRecord]:
        """This node's history on this chain, oldest first, within [since, until)."""
        rows = self.db.query(
            "SELECT * FROM earnings WHERE chain_id = ? AND genesis_hash = ? AND node = ?"
            " AND at >= ? AND at < ? ORDER BY at, id",
            (
                *self._scope,
                since if since is not None else float("-inf"),
                until if until is not None else float("inf"),
            ),
        )
        return [_earning_record(row) for row in rows]

    def record_verdict(self, record: VerdictRecord, *, keep: int = 100) -> None:
        """Store a miner's verdict (the same task again replaces it); keep the last `keep`."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO verdicts (chain_id, genesis_hash, miner, at, task_kind,"
                " session_id, task_id, passed, failed_checks, top1_agreement, cosine)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.chain.chain_id,
                    self.chain.genesis_hash,
                    record.miner.lower(),
                    record.at,
                    *_task_cols(record.task),
                    int(record.passed),
                    json.dumps(record.failed_checks),
                    record.top1_agreement,
                    record.cosine,
                ),
            )
            conn.execute(
                "DELETE FROM verdicts WHERE chain_id = ? AND genesis_hash = ? AND miner = ?"
                " AND id NOT IN (SELECT id FROM verdicts WHERE chain_id = ? AND genesis_hash = ?"
                " AND miner = ? ORDER BY id DESC LIMIT ?)",
                (self.chain.chain_id, self.chain.genesis_hash, record.miner.lower()) * 2 + (keep,),
            )

    def recent_verdicts(self, miner: str, n: int = 10) -> list[VerdictRecord]:
        """A miner's last `n` verdicts on this chain, oldest first (feed to `should_remove`)."""
        rows = self.db.query(
            "SELECT * FROM (SELECT * FROM verdicts WHERE chain_id = ? AND genesis_hash = ?"
            " AND miner = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (self.chain.chain_id, self.chain.genesis_hash, miner.lower(), n),
        )
        return [_verdict_record(row) for row in rows]


# --- rows to records --------------------------------------------------------------------------


def _task_cols(task: TaskRef) -> tuple[str, int, int]:
    return (task.kind.value, task.session_id, task.task_id)


def _task(row: sqlite3.Row) -> TaskRef:
    return TaskRef(TaskKind(row["task_kind"]), int(row["session_id"]), int(row["task_id"]))


def _commit_record(row: sqlite3.Row) -> CommitRecord:
    return CommitRecord(
        task=_task(row),
        role=TaskRole(row["role"]),
        state=CommitState(row["state"]),
        salt=row["salt"],
        answer=row["answer"],
        precommit_tx=row["precommit_tx"],
        commit_tx=row["commit_tx"],
        note=row["note"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def _tx_intent(row: sqlite3.Row) -> TxIntent:
    return TxIntent(
        key=row["intent_key"],
        attempt=int(row["attempt"]),
        nonce=int(row["nonce"]),
        tx_hash=row["tx_hash"],
        raw_tx=row["raw_tx"],
        state=TxState(row["state"]),
        detail=row["detail"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def _earning_record(row: sqlite3.Row) -> EarningRecord:
    return EarningRecord(
        at=float(row["at"]),
        kind=row["kind"],
        amount_wei=int(row["amount_wei"]),
        points=int(row["points"]),
        task=_task(row) if row["task_kind"] is not None else None,
        tx_hash=row["tx_hash"],
        note=row["note"],
    )


def _verdict_record(row: sqlite3.Row) -> VerdictRecord:
    return VerdictRecord(
        miner=row["miner"],
        task=_task(row),
        at=float(row["at"]),
        passed=bool(row["passed"]),
        failed_checks=tuple(json.loads(row["failed_checks"])),
        top1_agreement=row["top1_agreement"],
        cosine=row["cosine"],
    )


def _reachable(record: CommitRecord, task: TaskRef, target: CommitState) -> CommitRecord:
    """`record`, if it may move to `target`: not abandoned, and past what `target` requires."""
    if record.state is CommitState.ABANDONED:
        raise JournalError(f"task {task.key} was abandoned: {record.note}")
    if _ORDER.index(record.state) < _ORDER.index(_REQUIRES[target]):
        raise JournalError(
            f"task {task.key} is {record.state.value}; cannot skip to {target.value}"
        )
    return record
