"""The crash-safe journal against real SQLite: crashes, restarts, chains kept apart, threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.poi.validation import (
    AnswerLikelihood,
    ValidationThresholds,
    WindowPolicy,
    judge_answer,
    should_remove,
)
from engine.protocol import TaskKind, TaskRole
from engine.state.database import MIGRATIONS, Database
from engine.state.journal import (
    ChainKey,
    CommitStage,
    CommitState,
    EarningRecord,
    Journal,
    JournalError,
    TaskRef,
    TxState,
    VerdictRecord,
    resume_decision,
)
from engine.state.journal import (
    TxResume as Resume,
)

REPO = Path(__file__).resolve().parents[2]
CHAIN = ChainKey(31337, "0x" + "ab" * 32)
NODE = "0xAbC0000000000000000000000000000000000001"
NET = TaskRef(TaskKind.NETWORK, session_id=12)
USER = TaskRef(TaskKind.USER, session_id=3, task_id=7)


def _journal(path: Path, chain: ChainKey = CHAIN, node: str = NODE) -> Journal:
    return Journal(Database(path), chain, node)


def test_migrations_are_appended_after_the_foundation_ones() -> None:
    assert len(MIGRATIONS) >= 4
    assert "CREATE TABLE cache" in MIGRATIONS[0] and "CREATE TABLE benchmarks" in MIGRATIONS[1]
    assert "journal_commits" in MIGRATIONS[2] and "earnings" in MIGRATIONS[3]


def test_the_happy_path_through_every_state(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    salt = journal.prepare_commit(NET, TaskRole.ANSWERER, "42")
    assert salt.startswith("0x") and len(salt) == 66
    assert journal.mark_sent(NET, CommitStage.PRECOMMIT, "0xp1").state is CommitState.PRECOMMIT_SENT
    assert journal.mark_confirmed(NET, CommitStage.PRECOMMIT).state is CommitState.PRECOMMITTED
    assert journal.mark_sent(NET, CommitStage.COMMIT, "0xc1").state is CommitState.COMMIT_SENT
    done = journal.mark_confirmed(NET, CommitStage.COMMIT)
    assert (done.state, done.precommit_tx, done.commit_tx) == (
        CommitState.COMMITTED,
        "0xp1",
        "0xc1",
    )
    assert journal.open_commits() == []


def test_mark_landed_is_sent_and_confirmed_in_one_step(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    with pytest.raises(JournalError, match="no prepared answer"):
        journal.mark_landed(USER, CommitStage.PRECOMMIT, "0xp")
    journal.prepare_commit(USER, TaskRole.ANSWERER, "a")
    with pytest.raises(JournalError, match="cannot skip"):
        journal.mark_landed(USER, CommitStage.COMMIT, "0xc")
    assert journal.mark_landed(USER, CommitStage.PRECOMMIT, "0xp").state is CommitState.PRECOMMITTED
    done = journal.mark_landed(USER, CommitStage.COMMIT, "0xc")
    assert (done.state, done.precommit_tx, done.commit_tx) == (CommitState.COMMITTED, "0xp", "0xc")
    # A late precommit landing (a resend after a lost receipt) keeps the further state.
    assert journal.mark_landed(USER, CommitStage.PRECOMMIT, "").state is CommitState.COMMITTED
    journal.prepare_commit(NET, TaskRole.ANSWERER, "b")
    journal.abandon(NET, "window closed")
    with pytest.raises(JournalError, match="abandoned"):
        journal.mark_landed(NET, CommitStage.PRECOMMIT, "0xp")


def test_prepare_is_idempotent_and_refuses_a_second_answer(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    salt = journal.prepare_commit(USER, TaskRole.ANSWERER, "first")
    assert journal.prepare_commit(USER, TaskRole.ANSWERER, "first") == salt
    with pytest.raises(JournalError, match="different answer"):
        journal.prepare_commit(USER, TaskRole.ANSWERER, "second")
    other = journal.prepare_commit(TaskRef(TaskKind.USER, 3, 8), TaskRole.ANSWERER, "first")
    assert other != salt


def test_steps_cannot_be_skipped_or_resumed_after_abandoning(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    with pytest.raises(JournalError, match="no prepared answer"):
        journal.mark_sent(NET, CommitStage.PRECOMMIT, "0x1")
    journal.prepare_commit(NET, TaskRole.ANSWERER, "a")
    with pytest.raises(JournalError, match="cannot skip"):
        journal.mark_sent(NET, CommitStage.COMMIT, "0x2")
    journal.mark_sent(NET, CommitStage.PRECOMMIT, "0x1")
    # The precommit's confirmation may go unrecorded; the reveal may follow it directly.
    assert journal.mark_sent(NET, CommitStage.COMMIT, "0x2").state is CommitState.COMMIT_SENT
    # A late confirmation of the precommit does not move the record back.
    assert journal.mark_confirmed(NET, CommitStage.PRECOMMIT).state is CommitState.COMMIT_SENT
    abandoned = journal.abandon(NET, "commit window closed")
    assert abandoned.state is CommitState.ABANDONED and abandoned.note == "commit window closed"
    with pytest.raises(JournalError, match="abandoned"):
        journal.mark_confirmed(NET, CommitStage.COMMIT)
    assert journal.pending_reveals() == []


def test_crash_between_prepare_and_precommit_sent(tmp_path: Path) -> None:
    path = tmp_path / "db"
    journal = _journal(path)
    salt = journal.prepare_commit(NET, TaskRole.ANSWERER, "the answer")
    journal.db.close()  # killed before the precommit's broadcast was recorded

    reopened = _journal(path)
    pending = reopened.pending_precommits()
    assert [(r.task, r.salt, r.answer) for r in pending] == [(NET, salt, "the answer")]
    assert reopened.pending_reveals() == []
    # Resending binds the same salt: the same hash, whether or not the first one left.
    assert reopened.prepare_commit(NET, TaskRole.ANSWERER, "the answer") == salt


def test_crash_between_precommit_and_commit(tmp_path: Path) -> None:
    path = tmp_path / "db"
    journal = _journal(path)
    salt = journal.prepare_commit(USER, TaskRole.ANSWERER, "reveal me")
    journal.mark_sent(USER, CommitStage.PRECOMMIT, "0xpre")
    journal.prepare_commit(NET, TaskRole.ANSWERER, "done already")
    journal.mark_sent(NET, CommitStage.PRECOMMIT, "0xa")
    journal.mark_sent(NET, CommitStage.COMMIT, "0xb")
    journal.mark_confirmed(NET, CommitStage.COMMIT)
    journal.db.close()

    reopened = _journal(path)
    reveals = reopened.pending_reveals()
    assert [(r.task, r.salt, r.answer, r.precommit_tx) for r in reveals] == [
        (USER, salt, "reveal me", "0xpre")
    ]
    assert reopened.pending_precommits() == []


def test_sigkill_after_precommit_leaves_a_reveal_to_resume(tmp_path: Path) -> None:
    """A real process killed with SIGKILL right after recording the precommit as sent."""
    path = tmp_path / "db"
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from engine.state.database import Database
        from engine.state.journal import ChainKey, CommitStage, Journal, TaskRef
        from engine.protocol import TaskKind, TaskRole
        chain = ChainKey(31337, {CHAIN.genesis_hash!r})
        j = Journal(Database(Path({str(path)!r})), chain, {NODE!r})
        task = TaskRef(TaskKind.USER, 3, 7)
        print(j.prepare_commit(task, TaskRole.ANSWERER, "killed mid-task"), flush=True)
        j.record_intent("user:3:7:precommit", nonce=5, raw_tx="0xsigned")
        j.mark_sent(task, CommitStage.PRECOMMIT, "0xpre")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    salt = proc.stdout.strip()

    journal = _journal(path)
    [reveal] = journal.pending_reveals()
    assert (reveal.task, reveal.salt, reveal.answer) == (USER, salt, "killed mid-task")
    [intent] = journal.unsettled_txs()
    assert (intent.key, intent.nonce, intent.raw_tx) == ("user:3:7:precommit", 5, "0xsigned")


def test_two_chains_and_two_nodes_are_never_confused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    journal = _journal(path)
    journal.prepare_commit(NET, TaskRole.ANSWERER, "on the old devnet")
    reset_devnet = Journal(journal.db, ChainKey(31337, "0x" + "cd" * 32), NODE)
    other_node = Journal(journal.db, CHAIN, "0x" + "99" * 20)
    assert reset_devnet.pending_precommits() == [] and other_node.pending_precommits() == []
    assert reset_devnet.prepare_commit(NET, TaskRole.ANSWERER, "new chain, new answer")
    # Hash case and address case do not split one chain or node in two.
    same = Journal(journal.db, ChainKey(31337, CHAIN.genesis_hash.upper()), NODE.lower())
    assert [r.answer for r in same.pending_precommits()] == ["on the old devnet"]


def test_threads_preparing_the_same_task_agree_on_one_salt(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    salts: list[str] = []
    lock = threading.Lock()

    def prepare(i: int) -> None:
        salt = journal.prepare_commit(TaskRef(TaskKind.USER, 1, i % 5), TaskRole.ANSWERER, "x")
        with lock:
            salts.append(salt)

    threads = [threading.Thread(target=prepare, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(salts) == 40 and len(set(salts)) == 5
    assert len(journal.pending_precommits()) == 5


# --- transaction intents ----------------------------------------------------------------------


def test_intent_lifecycle_and_idempotency(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    first = journal.record_intent("ping:1", nonce=7)
    assert (first.state, first.attempt) == (TxState.INTENT, 1)
    # Asked again while pending: the stored intent, not a second one with a new nonce.
    assert journal.record_intent("ping:1", nonce=8) == first
    assert journal.mark_tx_sent("ping:1", "0xh").tx_hash == "0xh"
    assert journal.unsettled_txs()[0].state is TxState.SENT
    journal.mark_tx_failed("ping:1", "reverted: too early")
    assert journal.unsettled_txs() == []
    retry = journal.record_intent("ping:1", nonce=8)
    assert (retry.attempt, retry.nonce, retry.state) == (2, 8, TxState.INTENT)
    assert journal.mark_tx_confirmed("ping:1").state is TxState.CONFIRMED
    assert journal.record_intent("ping:1", nonce=9).nonce == 8
    assert journal.highest_nonce() == 8
    with pytest.raises(JournalError):
        journal.mark_tx_sent("nothing", "0x")


def test_resume_decision_after_a_restart(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    assert resume_decision(None, receipt_ok=None, account_nonce=0) is Resume.NOT_SENT
    intent = journal.record_intent("k", nonce=5)
    assert resume_decision(intent, receipt_ok=None, account_nonce=5) is Resume.NOT_SENT
    assert resume_decision(intent, receipt_ok=None, account_nonce=6) is Resume.SUPERSEDED
    signed = journal.record_intent("k2", nonce=6, raw_tx="0xraw", tx_hash="0xh")
    assert resume_decision(signed, receipt_ok=None, account_nonce=6) is Resume.IN_FLIGHT
    assert resume_decision(signed, receipt_ok=True, account_nonce=7) is Resume.DONE
    assert resume_decision(signed, receipt_ok=False, account_nonce=7) is Resume.FAILED
    sent = journal.mark_tx_sent("k", "0xk")
    assert resume_decision(sent, receipt_ok=None, account_nonce=5) is Resume.IN_FLIGHT
    confirmed = journal.mark_tx_confirmed("k")
    assert resume_decision(confirmed, receipt_ok=None, account_nonce=0) is Resume.DONE


def test_resume_decision_trusts_the_mempool_when_it_is_known(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    # Crashed after the broadcast, before its hash was recorded: ours waits at nonce 5.
    unsigned = journal.record_intent("w", nonce=5)
    assert (
        resume_decision(unsigned, receipt_ok=None, account_nonce=5, pending_nonce=6)
        is Resume.IN_FLIGHT
    )
    # Recorded as sent, but nothing of ours waits any more: the broadcast was lost.
    sent = journal.mark_tx_sent("w", "0xw")
    assert (
        resume_decision(sent, receipt_ok=None, account_nonce=5, pending_nonce=5) is Resume.NOT_SENT
    )
    assert (
        resume_decision(sent, receipt_ok=None, account_nonce=6, pending_nonce=6)
        is Resume.SUPERSEDED
    )


# --- history --------------------------------------------------------------------------------


def test_earnings_history_keeps_exact_wei_by_kind_and_time(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    big = 10**30  # more than SQLite's 64-bit integers hold
    journal.record_earning(EarningRecord(at=100.0, kind="payment", amount_wei=big, task=USER))
    journal.record_earning(EarningRecord(at=200.0, kind="points", points=3, task=NET))
    journal.record_earning(
        EarningRecord(at=300.0, kind="withdrawal", amount_wei=-big, tx_hash="0xw")
    )
    history = journal.earnings()
    assert [r.amount_wei for r in history] == [big, 0, -big]
    assert history[0].task == USER and history[2].task is None
    assert [r.kind for r in journal.earnings(since=150, until=300)] == ["points"]
    assert Journal(journal.db, CHAIN, "0x" + "11" * 20).earnings() == []


def test_verdict_window_keeps_the_last_n_and_feeds_the_removal_rule(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    miner = "0xMiner"
    for i in range(15):
        passed = i < 11  # the last four fail (removal at 4 of 10)
        journal.record_verdict(
            VerdictRecord(
                miner=miner,
                task=TaskRef(TaskKind.NETWORK, i),
                at=float(i),
                passed=passed,
                failed_checks=() if passed else ("top1",),
                top1_agreement=0.95 if passed else 0.3,
                cosine=None,
            ),
            keep=10,
        )
    window = journal.recent_verdicts("0xminer", n=10)
    assert [v.task.session_id for v in window] == list(range(5, 15))
    assert window[-1].failed_checks == ("top1",)
    assert should_remove([v.passed for v in window], WindowPolicy())
    assert len(journal.db.query("SELECT * FROM verdicts")) == 10
    # Recording the same task again (an oracle restarted) replaces it rather than counting twice.
    journal.record_verdict(
        VerdictRecord(miner, TaskRef(TaskKind.NETWORK, 14), 99.0, True, (), 0.9, 0.8), keep=10
    )
    window = journal.recent_verdicts(miner)
    assert [v.passed for v in window].count(False) == 3 and len(window) == 10


# --- any sequence of steps and crashes: the reopened journal says exactly what to resume --------

ORDER = list(CommitState)[:5]  # prepared .. committed, the happy path
TASKS = [NET, USER, TaskRef(TaskKind.USER, 3, 8)]
# Per stage: (the least state the record needs, the state the step reaches), as documented.
SEND = {
    CommitStage.PRECOMMIT: (CommitState.PREPARED, CommitState.PRECOMMIT_SENT),
    CommitStage.COMMIT: (CommitState.PRECOMMIT_SENT, CommitState.COMMIT_SENT),
}
CONFIRM = {
    CommitStage.PRECOMMIT: (CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED),
    CommitStage.COMMIT: (CommitState.COMMIT_SENT, CommitState.COMMITTED),
}


class JournalMachine(RuleBasedStateMachine):
    """A plain model of the documented states, checked against the journal across restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "db"
        self.journal = _journal(self.path)
        self.model: dict[TaskRef, tuple[CommitState, str, str]] = {}  # state, answer, salt

    def _expect(self, task: TaskRef, needed: CommitState, target: CommitState) -> None:
        known = self.model.get(task)
        ok = (
            known is not None
            and known[0] is not CommitState.ABANDONED
            and ORDER.index(known[0]) >= ORDER.index(needed)
        )
        if not ok:
            raise JournalError("expected refusal")
        assert known is not None
        state = max(known[0], target, key=ORDER.index)
        self.model[task] = (state, known[1], known[2])

    def _step(self, task: TaskRef, needed: CommitState, target: CommitState, act: Any) -> None:
        try:
            self._expect(task, needed, target)
        except JournalError:
            with pytest.raises(JournalError):
                act()
            return
        assert act().state is self.model[task][0]

    @rule(task=st.sampled_from(TASKS), answer=st.sampled_from(["a", "b"]))
    def prepare(self, task: TaskRef, answer: str) -> None:
        known = self.model.get(task)
        if known is not None and known[1] != answer:
            with pytest.raises(JournalError):
                self.journal.prepare_commit(task, TaskRole.ANSWERER, answer)
            return
        salt = self.journal.prepare_commit(task, TaskRole.ANSWERER, answer)
        if known is None:
            self.model[task] = (CommitState.PREPARED, answer, salt)
        assert salt == self.model[task][2]

    @rule(task=st.sampled_from(TASKS), stage=st.sampled_from(list(CommitStage)))
    def send(self, task: TaskRef, stage: CommitStage) -> None:
        self._step(task, *SEND[stage], lambda: self.journal.mark_sent(task, stage, "0xtx"))

    @rule(task=st.sampled_from(TASKS), stage=st.sampled_from(list(CommitStage)))
    def confirm(self, task: TaskRef, stage: CommitStage) -> None:
        self._step(task, *CONFIRM[stage], lambda: self.journal.mark_confirmed(task, stage))

    @rule(task=st.sampled_from(TASKS))
    def abandon(self, task: TaskRef) -> None:
        known = self.model.get(task)
        if known is None:
            with pytest.raises(JournalError):
                self.journal.abandon(task, "closed")
            return
        if known[0] is not CommitState.COMMITTED:
            self.model[task] = (CommitState.ABANDONED, known[1], known[2])
        assert self.journal.abandon(task, "closed").state is self.model[task][0]

    @rule()
    def crash_and_restart(self) -> None:
        self.journal.db.close()
        self.journal = _journal(self.path)

    @invariant()
    def journal_says_exactly_what_to_resume(self) -> None:
        def expected(states: set[CommitState]) -> set[tuple[TaskRef, str, str]]:
            return {(t, a, s) for t, (st_, a, s) in self.model.items() if st_ in states}

        def got(records: list[Any]) -> set[tuple[TaskRef, str, str]]:
            return {(r.task, r.answer, r.salt) for r in records}

        reveal = {CommitState.PRECOMMIT_SENT, CommitState.PRECOMMITTED, CommitState.COMMIT_SENT}
        assert got(self.journal.pending_precommits()) == expected({CommitState.PREPARED})
        assert got(self.journal.pending_reveals()) == expected(reveal)

    def teardown(self) -> None:
        self.journal.db.close()
        self.dir.cleanup()


JournalMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
test_journal_state_machine_across_crashes = JournalMachine.TestCase


def test_a_verdict_is_stored_as_judged(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "db")
    verdict = judge_answer(
        AnswerLikelihood(top1=(True, True, False), eos_expected_after=False),
        cosine=0.2,
        thresholds=ValidationThresholds(),
    )
    record = VerdictRecord.from_verdict(verdict, miner="0xM", task=USER, at=5.0)
    journal.record_verdict(record)
    [stored] = journal.recent_verdicts("0xm")
    # PoI v2 allows no miss in the opening (the near-tie margin covers what the one allowed
    # miss used to), so a miss at the third token fails the opening too.
    assert stored == VerdictRecord(
        "0xm", USER, 5.0, False, ("opening", "top1", "ending", "cosine"), 2 / 3, 0.2
    )
