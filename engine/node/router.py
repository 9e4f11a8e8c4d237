"""The router: the network behind one front door, as a user of it (docs/ROUTER.md).

The router holds one account. For each request it does what `ask` does, with the same
functions (engine/node/user_session.py): wait until k miners serving the model are in the pool,
keep the deposit topped up, submit the prompt into an open session with the same terms (one per
model, precision and k, opened on first use and reused), follow the task until the oracle
validated it, and read the scores and the consensus answer from the chain.

What it adds for many clients:
- admission: at most `max_in_flight` tasks on chain at once and `max_queue` waiting behind them;
  one more is refused (`Busy`), so a burst never piles unbounded escrow or threads;
- one submitter at a time (deposit, open and submit move the deposit; two at once could both
  see the same balance);
- a journal of requests (engine/state/router_store.py), written before the first transaction of
  a request: after a crash, `resume()` asks the chain which of the open rows reached it, follows
  those to their validation and marks the others not sent. A row is never submitted twice;
- a deposit budget: the router never deposits more than `budget_wei` in all (remembered in the
  home database per chain and account).

Errors are `RouterError`s with the HTTP status and OpenAI error code the front answers with.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chain.client import ChainClient
from chain.errors import ChainError, RpcUnavailable
from chain.wrappers import NodeStatus, Tier, model_id
from engine import failpoints
from engine.node.pool_index import PoolIndex
from engine.node.task_prompt import Sampling
from engine.node.user_session import (
    DEFAULT_PRICE_WEI,
    PRECISIONS,
    VALIDATION_LEVEL_NONE,
    VALIDATION_LEVEL_POI,
    SubmittedTask,
    TaskOutcome,
    ValidationTimeout,
    reusable_session,
    submit_user_task,
    wait_for_outcome,
    wait_for_pool,
)
from engine.state.database import Database
from engine.state.journal import ChainKey
from engine.state.router_store import RequestJournal, RequestRecord, RequestState

log = logging.getLogger(__name__)

RPC_RETRY_AFTER_S = 5


class RouterError(Exception):
    """A request the router cannot answer, with what the HTTP front says about it."""

    status = 500
    code = "internal_error"
    kind = "server_error"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(RouterError):
    status, code, kind = 400, "invalid_request", "invalid_request_error"


class ContextTooLong(BadRequest):
    code = "context_length_exceeded"


class UnknownModel(RouterError):
    status, code, kind = 404, "model_not_found", "invalid_request_error"


class Busy(RouterError):
    status, code, kind = 429, "too_many_requests", "rate_limit_error"


class NoMiners(RouterError):
    status, code, kind = 503, "no_miners", "service_unavailable"


class RpcDown(RouterError):
    status, code, kind = 503, "rpc_unavailable", "service_unavailable"


class BudgetSpent(RouterError):
    status, code, kind = 503, "budget_spent", "service_unavailable"


class NoValidAnswer(RouterError):
    status, code, kind = 502, "validation_failed", "upstream_error"


class NotValidated(RouterError):
    status, code, kind = 504, "validation_timeout", "upstream_error"


@dataclass(frozen=True)
class RouterSettings:
    redundancy: int = 3
    # Unvalidated requests: nothing compares the k answers, so more miners only cost more.
    unvalidated_redundancy: int = 1
    precision: str = "quantized"
    price_wei: int = DEFAULT_PRICE_WEI
    top_up_tasks: int = 10  # a top-up covers this many tasks' price, within the budget
    budget_wei: int = 10**18  # the most the router deposits in all, per chain and account
    max_in_flight: int = 4
    max_queue: int = 16
    pool_wait_s: float = 30.0  # how long a request waits for miners before a 503
    request_timeout_s: float = 600.0  # submit to validation, before a 504
    max_tokens_limit: int = 128  # the miners' and oracle's answer_max_tokens
    context_tokens: int = 2048  # the miners' context (prompt + answer must fit)
    # As `ask` polls: on the in-process chain every read of the router queues behind the
    # nodes' own, so polling faster slows the tasks it waits for.
    poll_s: float = 0.5


@dataclass(frozen=True)
class TaskRequest:
    """One request as the router submits it (the prompt already in its on-chain form)."""

    model: str
    prompt: str  # engine/node/task_prompt.py's encoding
    redundancy: int
    precision: str
    key_id: str | None = None
    request_id: str = field(default_factory=lambda: "req-" + secrets.token_hex(12))
    # False: an unvalidated session (miners may sample; nothing is judged, docs/ROUTER.md).
    validated: bool = True
    sampling: Sampling | None = None  # what the prompt's envelope carries, for the answer

    @property
    def validation_level(self) -> int:
        return VALIDATION_LEVEL_POI if self.validated else VALIDATION_LEVEL_NONE

    @property
    def session_terms(self) -> tuple[str, str, int, int]:
        """What an open session must match to take this request."""
        return (self.model, self.precision, self.redundancy, self.validation_level)


@dataclass(frozen=True)
class RouterAnswer:
    request_id: str
    outcome: TaskOutcome
    consensus_index: int | None
    spent_wei: int
    price_wei: int
    model: str
    network: str
    router: str
    latency_s: float
    validated: bool = True
    sampling: Sampling | None = None

    def extension(self) -> dict[str, Any]:
        """The `cortensor` object every answer carries."""
        o = self.outcome
        return {
            "request_id": self.request_id,
            "network": self.network,
            "router": self.router,
            # False: an unvalidated session's answer: sampled (or greedy) and accepted as
            # answered, judged by no one; each miner's score is 100 for a non-empty answer.
            "validated": self.validated,
            "sampling": self.sampling.to_json() if self.sampling is not None else None,
            "session_id": o.session_id,
            "task_id": o.task_id,
            "miners": [
                {"address": m.address, "score": m.score, "passed": m.passed} for m in o.miners
            ],
            "consensus_index": self.consensus_index,
            "tx_hashes": list(o.tx_hashes),
            "gas_used": o.gas_used,
            "router_gas_used": o.user_gas_used,
            "price_wei": str(self.price_wei),
            "spent_wei": str(self.spent_wei),
        }


@dataclass(frozen=True)
class PooledModel:
    id: str
    precisions: tuple[str, ...]
    miners: int  # in the user-task pool, serving it
    full_precision_miners: int


Listener = Callable[[str, dict[str, Any]], None]  # ("answered" | "failed" | ..., figures)


class Router:
    """The protocol side of the router; the HTTP front is cortensor_desktop/service/router_api."""

    def __init__(
        self,
        client: ChainClient,
        db: Database,
        chain: ChainKey,
        settings: RouterSettings | None = None,
        known_models: Sequence[str] = (),
        network: str = "",
        clock: Callable[[], float] = time.monotonic,
        pool: PoolIndex | None = None,
    ) -> None:
        """`pool`: a pool index to share (the embedded network's oracle keeps one); else the
        router reads its own once, then only new registry events for each request."""
        if client.address is None:
            raise ValueError("the router needs a signing account")
        self.client = client
        self.address: str = client.address
        self.db = db
        self.chain = chain
        self.settings = settings or RouterSettings()
        self.network = network
        self.journal = RequestJournal(db, chain, self.address)
        self._known = {model_id(m): m for m in known_models}
        self._clock = clock
        self._slots = threading.BoundedSemaphore(self.settings.max_in_flight)
        self._admit_lock = threading.Lock()
        self._active = 0
        self._submit_lock = threading.Lock()
        self._sessions: dict[tuple[str, str, int, int], int] = {}
        # Kept across requests: each reads only the registry's new events. A fresh index reads
        # every event since the deploy block, which on the in-process chain costs seconds and
        # grows with the chain (its eth_getLogs walks every block of the range).
        self.pool = pool or PoolIndex(client)  # reads nothing until its first refresh
        self._listeners: list[Listener] = []
        self._stopping = threading.Event()
        self._resumers: list[threading.Thread] = []

    # -- what the front reads -----------------------------------------------------------------
    def on(self, listener: Listener) -> None:
        """Called after each request ends (answered, failed, refused): the metrics' feed."""
        self._listeners.append(listener)

    @property
    def active(self) -> int:
        with self._admit_lock:
            return self._active

    def known_model(self, name: str) -> bool:
        return model_id(name) in self._known

    def pooled_models(self) -> list[PooledModel]:
        """The models pool miners serve, by how many miners serve each (read from the chain)."""
        registry = self.client.registry
        counts: dict[bytes, list[int]] = {}
        for i in range(registry.miner_count()):
            miner = registry.miner_at(i)
            info = registry.node_info(miner)
            if info.status != NodeStatus.EPHEMERAL or info.away:
                continue
            for model in registry.models_of(miner):
                entry = counts.setdefault(model, [0, 0])
                entry[0] += 1
                entry[1] += int(info.tier == Tier.GPU_FULL)
        found = []
        for model, (miners, full) in counts.items():
            name = self._known.get(model, "0x" + model.hex())
            precisions = ("quantized", "full") if full else ("quantized",)
            found.append(PooledModel(name, precisions, miners, full))
        return sorted(found, key=lambda m: m.id)

    def health(self) -> dict[str, Any]:
        try:
            head = int(self.client.web3.eth.block_number)
            deposit = self.client.payment.deposit_of(self.address)
            rpc = "ok"
        except (RpcUnavailable, ChainError) as exc:
            head, deposit, rpc = -1, -1, f"down: {exc}"
        return {
            "status": "ok" if rpc == "ok" else "degraded",
            "network": self.network,
            "router": self.address,
            "rpc": rpc,
            "block": head,
            "deposit_wei": str(deposit),
            "deposited_wei": str(self._deposited()),
            "budget_wei": str(self.settings.budget_wei),
            "in_flight": self.active,
            "max_in_flight": self.settings.max_in_flight,
            "max_queue": self.settings.max_queue,
            "open_requests": len(self.journal.open_requests()),
        }

    # -- one request ----------------------------------------------------------------------------
    def complete(self, request: TaskRequest) -> RouterAnswer:
        """Submit one request and wait for its validated answer (blocking; raises RouterError)."""
        started = self._clock()
        self._admit()
        try:
            with self._slots:  # the bounded queue: wait here for a slot
                answer = self._run(request, started)
        except RouterError as exc:
            self._tell("failed", {"code": exc.code, "status": exc.status, "model": request.model})
            raise
        finally:
            with self._admit_lock:
                self._active -= 1
        self._tell(
            "answered",
            {"latency_s": answer.latency_s, "spent_wei": answer.spent_wei, "model": answer.model},
        )
        return answer

    def _admit(self) -> None:
        limit = self.settings.max_in_flight + self.settings.max_queue
        with self._admit_lock:
            if self._active >= limit:
                raise Busy(
                    f"the router is at its limit: {self.settings.max_in_flight} tasks on the "
                    f"network and {self.settings.max_queue} waiting; retry shortly",
                    retry_after=2,
                )
            self._active += 1

    def _run(self, request: TaskRequest, started: float) -> RouterAnswer:
        if request.precision not in PRECISIONS:
            raise BadRequest(f"precision must be one of {', '.join(PRECISIONS)}")
        self._wait_for_miners(request)
        submitted = self._submit(request)
        outcome = self._wait(request, submitted)
        return self._settle(request, outcome, started)

    def _wait_for_miners(self, request: TaskRequest) -> None:
        deadline = self._clock() + self.settings.pool_wait_s
        try:
            wait_for_pool(
                self.client,
                request.model,
                request.precision,
                request.redundancy,
                deadline,
                poll_s=self.settings.poll_s,
                clock=self._clock,
                pool=self.pool,
            )
        except ValidationTimeout as exc:
            message = str(exc).replace("--timeout", f"{self.settings.pool_wait_s:.0f} s")
            raise NoMiners(message.replace("Lower --redundancy", "Ask for fewer miners")) from None
        except RpcUnavailable as exc:
            raise _rpc_down(exc) from None

    def _submit(self, request: TaskRequest) -> SubmittedTask:
        with self._submit_lock:
            try:
                head = int(self.client.web3.eth.block_number)
                self._top_up(request)
                key = request.session_terms
                session = self._session(key)
            except RpcUnavailable as exc:
                raise _rpc_down(exc) from None
            except ChainError as exc:
                raise RouterError(f"the router could not prepare the task: {exc}") from None
            self.journal.begin(
                request.request_id,
                key_id=request.key_id,
                model=request.model,
                precision=request.precision,
                redundancy=request.redundancy,
                price_wei=self.settings.price_wei,
                from_block=head,
            )
            failpoints.hit("router-before-submit")
            try:
                submitted = submit_user_task(
                    self.client,
                    request.model,
                    request.prompt,
                    request.redundancy,
                    request.precision,
                    price_wei=self.settings.price_wei,
                    session_id=session,
                    validation_level=request.validation_level,
                    pool=self.pool,
                )
            except ChainError as exc:
                # Sent or not? The chain decides, as after a crash; never send it again.
                found = self._find_on_chain(self.journal.get(request.request_id))
                if found is None:
                    self.journal.mark_not_sent(request.request_id, f"submit failed: {exc}")
                    if isinstance(exc, RpcUnavailable):
                        raise _rpc_down(exc) from None
                    self._sessions.pop(key, None)
                    raise RouterError(f"the task could not be submitted: {exc}") from None
                submitted = found
            failpoints.hit("router-after-submit")  # on chain, not yet in the journal
            self.journal.mark_submitted(request.request_id, submitted.session_id, submitted.task_id)
            self._remember_session(key, submitted.session_id)
            return submitted

    def _wait(self, request: TaskRequest, submitted: SubmittedTask) -> TaskOutcome:
        deadline = self._clock() + self.settings.request_timeout_s
        while True:
            try:
                return wait_for_outcome(
                    self.client,
                    submitted,
                    deadline,
                    poll_s=self.settings.poll_s,
                    clock=self._clock,
                    stages=False,
                )
            except ValidationTimeout as exc:
                # The row stays SUBMITTED: `resume()` of a later start still settles it.
                raise NotValidated(f"{exc} (request {request.request_id})") from None
            except RpcUnavailable as exc:
                if self._clock() > deadline:
                    raise _rpc_down(exc) from None
                time.sleep(self.settings.poll_s)
            except ChainError as exc:  # refunded after the task timeout: nothing was paid
                self.journal.mark_failed(request.request_id, str(exc))
                raise NoValidAnswer(f"{exc} (request {request.request_id})") from None

    def _settle(self, request: TaskRequest, outcome: TaskOutcome, started: float) -> RouterAnswer:
        spent, consensus = self._settlement(outcome)
        answer = RouterAnswer(
            request_id=request.request_id,
            outcome=outcome,
            consensus_index=consensus,
            spent_wei=spent,
            price_wei=self.settings.price_wei,
            model=request.model,
            network=self.network,
            router=self.address,
            latency_s=self._clock() - started,
            validated=request.validated,
            sampling=request.sampling,
        )
        self._account(request.request_id, request.key_id, answer)
        if outcome.answer is None:
            scores = ", ".join(f"{m.address[:10]} {m.score}" for m in outcome.miners)
            raise NoValidAnswer(
                f"task {outcome.task_id} failed validation on every miner ({scores}); the "
                "price went back to the router's deposit, nothing was paid"
            )
        return answer

    def _account(self, request_id: str, key_id: str | None, answer: RouterAnswer) -> None:
        document = answer.extension()
        if answer.outcome.answer is None:
            self.journal.mark_failed(request_id, "no answer passed", answer.spent_wei, document)
        else:
            self.journal.mark_answered(request_id, answer.spent_wei, document)
        if key_id is not None:
            from engine.state.router_store import ApiKeys

            ApiKeys(self.db).add_spend(key_id, answer.spent_wei)

    def _settlement(self, outcome: TaskOutcome) -> tuple[int, int | None]:
        """What the task cost and the consensus index.

        The cost follows the contract's rule (SessionQueue.validate: each passing miner that
        revealed gets price / k; the rest goes back to the deposit), from the scores the
        oracle's `validate` wrote (TaskOutcome), so it costs no chain read; the tests check it
        against the chain's `TaskSettled`. The consensus index is the `validate` call's own
        argument, read from the task's last transaction."""
        share = self.settings.price_wei // max(1, len(outcome.miners))
        spent = share * sum(1 for m in outcome.miners if m.passed)
        consensus = self._consensus(outcome.tx_hashes[-1]) if outcome.tx_hashes else None
        return spent, consensus

    def _consensus(self, validate_tx: str) -> int | None:
        tx = self.client.web3.eth.get_transaction(validate_tx)  # type: ignore[arg-type]
        try:
            function, params = self.client.queue.contract.decode_function_input(tx["input"])
        except ValueError:  # not a SessionQueue call: no index to report
            return None
        if function.fn_name != "validate":
            return None
        index = int(params["consensus"])
        return index if index < len(params["miners"]) else None

    # -- deposit and sessions -----------------------------------------------------------------
    def _top_up(self, request: TaskRequest) -> None:
        price = self.settings.price_wei
        deposit = self.client.payment.deposit_of(self.address)
        if deposit >= price:
            return
        room = self.settings.budget_wei - self._deposited()
        want = max(price - deposit, price * self.settings.top_up_tasks - deposit)
        amount = min(want, room)
        if amount < price - deposit:
            raise BudgetSpent(
                f"the router's deposit budget is spent ({self.settings.budget_wei} wei "
                "deposited in all); raise it (--budget-eth) to serve more requests"
            )
        self.client.payment.deposit(amount)
        self.db.cache_put(self._budget_key, self._deposited() + amount)
        log.info("router deposit topped up by %d wei", amount)

    @property
    def _budget_key(self) -> str:
        return f"router-deposited:{self.chain.chain_id}:{self.chain.genesis_hash}:{self.address}"

    def _deposited(self) -> int:
        stored = self.db.cache_get(self._budget_key)
        return int(stored) if isinstance(stored, int) else 0

    def _session_key(self, key: tuple[str, str, int, int]) -> str:
        model, precision, k, level = key
        unvalidated = ":unvalidated" if level == VALIDATION_LEVEL_NONE else ""
        return (
            f"router-session:{self.chain.chain_id}:{self.chain.genesis_hash}:"
            f"{self.address.lower()}:{model}:{precision}:{k}:{self.settings.price_wei}"
            + unvalidated
        )

    def _session(self, key: tuple[str, str, int, int]) -> int | None:
        """The open session with these terms, checked on chain once per process; None: open one."""
        if key in self._sessions:
            return self._sessions[key]
        stored = self.db.cache_get(self._session_key(key))
        if isinstance(stored, int) and reusable_session(
            self.client, stored, key[0], key[1], key[2], self.settings.price_wei, key[3]
        ):
            self._sessions[key] = stored
            return stored
        return None

    def _remember_session(self, key: tuple[str, str, int, int], session_id: int) -> None:
        if self._sessions.get(key) != session_id:
            self._sessions[key] = session_id
            self.db.cache_put(self._session_key(key), session_id)

    # -- after a crash --------------------------------------------------------------------------
    def resume(self, wait: bool = False) -> list[RequestRecord]:
        """Settle the journal's open requests: adopt what reached the chain, never resend.

        Rows still SUBMITTING are looked up on chain (a `TaskQueued` of this account since the
        row's block that no other row claims); found, they are followed like SUBMITTED ones in
        background threads (or here, with `wait`) until validated and accounted.
        """
        open_rows = self.journal.open_requests()
        for row in open_rows:
            submitted = self._adopt(row)
            if submitted is None:
                continue
            if wait:
                self._finish(row, submitted)
            else:
                thread = threading.Thread(
                    target=self._finish, args=(row, submitted), name="router-resume", daemon=True
                )
                thread.start()
                self._resumers.append(thread)
        return open_rows

    def _adopt(self, row: RequestRecord) -> SubmittedTask | None:
        if row.state is RequestState.SUBMITTED and row.task_id is not None:
            assert row.session_id is not None
            return self._submitted_from_chain(row.session_id, row.task_id, row.from_block or 0)
        found = self._find_on_chain(row)
        if found is None:
            self.journal.mark_not_sent(
                row.id, "the router stopped before this task reached the chain; nothing was paid"
            )
            log.info("request %s: not on chain, marked not sent", row.id)
            return None
        self.journal.mark_submitted(row.id, found.session_id, found.task_id)
        log.info("request %s: found on chain as task %d, following it", row.id, found.task_id)
        return found

    def _find_on_chain(self, row: RequestRecord | None) -> SubmittedTask | None:
        """The task a SUBMITTING row sent, if any: this account's, since its block, unclaimed.

        Submits are serialised, so at most one row is SUBMITTING at a time per account."""
        if row is None:
            return None
        claimed = self.journal.claimed_tasks()
        start = row.from_block or 0
        cursor = self.client.queue.cursor("TaskQueued", start)
        head = int(self.client.web3.eth.block_number)
        for event in cursor.poll(head):
            task_id = int(event.args["taskId"])
            if task_id in claimed:
                continue
            session_id = int(event.args["sessionId"])
            owner = str(self.client.queue.call("sessions", session_id)[0])
            if owner.lower() == self.address.lower():
                return self._submitted_from_chain(session_id, task_id, event.block_number)
        return None

    def _submitted_from_chain(self, session_id: int, task_id: int, block: int) -> SubmittedTask:
        """A SubmittedTask for a task found on chain: its submit transaction from the event."""
        from chain.transactions import TxResult

        cursor = self.client.queue.cursor("TaskQueued", block, taskId=task_id)
        events = cursor.poll(int(self.client.web3.eth.block_number))
        if not events:
            raise RouterError(f"task {task_id} has no TaskQueued event since block {block}")
        tx_hash = events[0].tx_hash
        receipt = self.client.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        result = TxResult(tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]), receipt)
        return SubmittedTask(session_id, task_id, (result,))

    def _finish(self, row: RequestRecord, submitted: SubmittedTask) -> None:
        try:
            level = int(self.client.queue.call("sessions", submitted.session_id)[2])
        except ChainError:  # only the answer's `validated` flag depends on it
            level = VALIDATION_LEVEL_POI
        request = TaskRequest(
            model=row.model,
            prompt="",
            redundancy=row.redundancy,
            precision=row.precision,
            key_id=row.key_id,
            request_id=row.id,
            validated=level != VALIDATION_LEVEL_NONE,
        )
        try:
            outcome = self._wait(request, submitted)
            self._settle(request, outcome, self._clock())
        except RouterError as exc:
            log.warning("request %s (task %d): %s", row.id, submitted.task_id, exc.message)

    def join_resumed(self, timeout_s: float) -> None:
        for thread in self._resumers:
            thread.join(timeout=timeout_s)

    def _tell(self, what: str, figures: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(what, figures)
            except Exception:  # a metrics reader must never break a request
                log.exception("router listener failed")


def _rpc_down(exc: Exception) -> RpcDown:
    return RpcDown(
        f"the network's RPC does not answer ({exc}); nothing was lost, retry later",
        retry_after=RPC_RETRY_AFTER_S,
    )
