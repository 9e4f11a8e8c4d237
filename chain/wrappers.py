"""Typed wrappers, one per contract, bound to one signing account.

Method names follow the contracts; each state-changing method returns a TxResult (and the new id
where the contract creates one), each view returns plain Python values. Reverts arrive as
ContractRevert with the contract's error name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_utils.crypto import keccak
from web3.contract import Contract

from chain.events import ChainEvent, EventCursor, LogPager, events_in_receipt
from chain.transactions import TxResult, TxSender

# NodeStats stages (Common.sol): create, prepare, precommit, commit, validate, user task.
STAGE_CREATE, STAGE_PREPARE, STAGE_PRECOMMIT, STAGE_COMMIT, STAGE_VALIDATE, STAGE_USER_TASK = range(
    6
)
STAGE_COUNT = 6
NO_CONSENSUS = 255


# The contracts' states and statuses, numbered as the Solidity enums and constants number them.
class SessionState(IntEnum):
    """Cognitive.State: a network task's session."""

    NONE, REQUESTED, CREATED, PREPARED, PRECOMMIT, COMMIT, COMMITTED, ENDED = range(8)


class SlotStatus(IntEnum):
    """Cognitive: one selected miner's progress in a session."""

    NONE, SELECTED, PRECOMMITTED, COMMITTED = range(4)


class TaskState(IntEnum):
    """SessionQueue.State: a user task. Ack and precommit both happen while it is Assigned.

    REFUNDED: the leader left it for the task timeout and its owner (or a miner) took the price
    back (SessionQueue.refund)."""

    NONE, QUEUED, ASSIGNED, COMMIT, COMMITTED, VALIDATED, REFUNDED = range(7)

    @property
    def finished(self) -> bool:
        return self in (TaskState.VALIDATED, TaskState.REFUNDED)


class AssignmentStatus(IntEnum):
    """SessionQueue: one assigned miner's progress in a user task."""

    NONE, ASSIGNED, ACKED, PRECOMMITTED, COMMITTED = range(5)


class NodeStatus(IntEnum):
    """NodeRegistry.Status: ephemeral nodes are the user-task pool."""

    NONE, REGISTERED, EPHEMERAL = range(3)


class Tier(IntEnum):
    """NodeRegistry's tier code: what a miner registers it can serve (docs/PROFILER.md's tiers).

    Full precision (`ask --precision full`) is served only by GPU_FULL nodes.
    """

    CPU_LOW, CPU_HIGH, GPU_QUANTIZED, GPU_FULL = range(4)

    @property
    def label(self) -> str:
        """The profiler's name for this tier: cpu-low, cpu-high, gpu-quantized, gpu-full."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> Tier:
        return cls[label.upper().replace("-", "_")]

    @classmethod
    def label_of(cls, code: int) -> str | None:
        """The name of a registered code; None for a code the contract does not define."""
        return cls(code).label if code in cls._value2member_map_ else None


class Precision(IntEnum):
    """SessionQueue: the precision a user session asks for."""

    QUANTIZED, FULL = range(2)


# Cognitive/SessionQueue: a score at or above this passes and is paid.
PASS_SCORE = 60
# SessionQueue.MAX_K: the highest redundancy a session may ask for.
MAX_K = 16
# How many present miners one `presentMiners` call returns (a page).
PRESENT_PAGE = 256


def model_id(name: str) -> bytes:
    """The bytes32 a model is known by on chain: keccak of its catalogue name."""
    return keccak(text=name)


def commitment(task_or_session_id: int, miner: str, salt: bytes, answer: str) -> bytes:
    """The 23-byte commitment the contracts check on reveal (same as commitmentOf on chain)."""
    from eth_abi.abi import encode

    digest = keccak(
        encode(
            ["uint256", "address", "bytes32", "bytes32"],
            [task_or_session_id, miner, salt, keccak(text=answer)],
        )
    )
    return digest[:23]


@dataclass(frozen=True)
class NodeInfo:
    status: int  # 0 none, 1 registered, 2 ephemeral (in the user-task pool)
    tier: int
    memory_mb: int
    successes: int
    payout: str
    app_version: str
    away: bool = False  # paused by its operator: out of selection and the pool
    price_floor: int = 0  # wei per answer token it accepts at least (setPriceFloor)


class ContractWrapper:
    name = ""

    def __init__(
        self, contract: Contract, sender: TxSender | None, pager: LogPager | None = None
    ) -> None:
        self.contract = contract
        self.sender = sender
        self.pager = pager or LogPager()  # the client's: one span for every cursor

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def _tx(self, function: str, *args: Any, value: int = 0) -> TxResult:
        if self.sender is None:
            from chain.errors import WalletError

            raise WalletError(f"{self.name}.{function} needs a wallet: this client is read-only")
        call = getattr(self.contract.functions, function)(*args)
        return self.sender.send(call, f"{self.name}.{function}", value=value)

    def call(self, function: str, *args: Any) -> Any:
        """A read-only call of any view function (for fields no typed method covers yet)."""
        return self._call(function, *args)

    def _call(self, function: str, *args: Any) -> Any:
        return getattr(self.contract.functions, function)(*args).call()

    def events(self, result: TxResult) -> list[ChainEvent]:
        return events_in_receipt(self.name, self.contract, result.receipt)

    def cursor(self, event_name: str, from_block: int, **filters: Any) -> EventCursor:
        return EventCursor(
            self.name,
            self.contract,
            event_name,
            from_block,
            argument_filters=filters or None,
            pager=self.pager,
        )

    def _new_id(self, result: TxResult, event_name: str, key: str) -> int:
        for event in self.events(result):
            if event.name == event_name:
                return int(event.args[key])
        raise AssertionError(f"{event_name} missing from {result.tx_hash}")

    def protocol_version(self) -> int:
        return int(self._call("protocolVersion"))


class NodeRegistry(ContractWrapper):
    name = "NodeRegistry"

    def register(
        self, tier: int, memory_mb: int, app_version: str, models: list[bytes], payout: str
    ) -> TxResult:
        return self._tx("register", tier, memory_mb, app_version, models, payout)

    def update_spec(
        self, tier: int, memory_mb: int, app_version: str, models: list[bytes]
    ) -> TxResult:
        return self._tx("updateSpec", tier, memory_mb, app_version, models)

    def set_payout(self, payout: str) -> TxResult:
        return self._tx("setPayout", payout)

    def set_away(self, away: bool) -> TxResult:
        return self._tx("setAway", away)

    def add_oracle(self, oracle: str) -> TxResult:
        return self._tx("addOracle", oracle)

    def set_module(self, module: str, enabled: bool) -> TxResult:
        """Disable at once; enable at once only during setup, else schedule it (ModuleScheduled:
        `activate_module` after the registry's module delay)."""
        return self._tx("setModule", module, enabled)

    def set_allow_listed(self, node: str, allowed: bool) -> TxResult:
        return self._tx("setAllowListed", node, allowed)

    def set_open_registration(self, open_: bool) -> TxResult:
        return self._tx("setOpenRegistration", open_)

    def set_price_floor(self, wei_per_token: int) -> TxResult:
        """The least this node accepts per answer token; assign refuses it below that."""
        return self._tx("setPriceFloor", wei_per_token)

    def takeover(self) -> TxResult:
        return self._tx("takeover")

    # Admin powers: bounded and visible (docs/CHAIN.md "Who is trusted with what").
    def remove_oracle(self, oracle: str) -> TxResult:
        return self._tx("removeOracle", oracle)

    def transfer_admin(self, next_admin: str) -> TxResult:
        """Step one of two: `accept_admin` from the new key completes it."""
        return self._tx("transferAdmin", next_admin)

    def accept_admin(self) -> TxResult:
        return self._tx("acceptAdmin")

    def activate_module(self, module: str) -> TxResult:
        """Switch on a module scheduled by `set_module` once its delay is over (anyone)."""
        return self._tx("activateModule", module)

    def end_setup(self) -> TxResult:
        return self._tx("endSetup")

    def admin(self) -> str:
        return str(self._call("admin"))

    def module_ready_at(self, module: str) -> int:
        """When a scheduled module may be activated; 0 when none is scheduled."""
        return int(self._call("moduleReadyAt", module))

    def is_module(self, module: str) -> bool:
        return bool(self._call("isModule", module))

    def node_info(self, node: str) -> NodeInfo:
        status, tier, memory_mb, successes, payout, away, _, _, floor, app_version = self._call(
            "nodeInfo", node
        )
        return NodeInfo(
            int(status),
            int(tier),
            int(memory_mb),
            int(successes),
            str(payout),
            str(app_version),
            bool(away),
            int(floor),
        )

    def models_of(self, node: str) -> list[bytes]:
        return [bytes(m) for m in self._call("modelsOfNode", node)]

    def leader(self) -> str:
        return str(self._call("leader"))

    def miner_count(self) -> int:
        return int(self._call("minerCount"))

    def miner_at(self, index: int) -> str:
        return str(self._call("minerAt", index))

    def present_count(self) -> int:
        return int(self._call("presentCount"))

    def present_page(self, start: int, limit: int = PRESENT_PAGE) -> list[str]:
        return [str(a) for a in self._call("presentMiners", start, limit)]

    def present_miners(self) -> list[str]:
        """Registered miners that are not away: the ones selection and assignment may pick.

        One call per PRESENT_PAGE of them, however many miners registered or went away."""
        found: list[str] = []
        while True:
            page = self.present_page(len(found))
            found += page
            if len(page) < PRESENT_PAGE:
                return found


class NodeStats(ContractWrapper):
    name = "NodeStats"

    def ping(self) -> TxResult:
        return self._tx("ping")

    def remove_from_pool(self, node: str) -> TxResult:
        """Leader oracle only: the window rule's removal (emits NodeRemovedFromPool)."""
        return self._tx("removeFromPool", node)

    def stats(self, node: str) -> dict[str, int]:
        names = (
            "streak",
            "best_streak",
            "successes",
            "level",
            "user_tasks",
            "user_points",
            "fail_streak",
            "pings",
            "last_ping",
        )
        return {n: int(v) for n, v in zip(names, self._call("stats", node), strict=True)}

    def stage(self, node: str, stage: int) -> tuple[int, int]:
        """(count, points) of one stage."""
        count, points = self._call("stageCount", node, stage)
        return int(count), int(points)


class Cognitive(ContractWrapper):
    """Network tasks: request -> create -> prepare -> start -> precommit -> commit -> end."""

    name = "Cognitive"

    def request(self, seed: bytes, creator: str, preparer: str) -> tuple[int, TxResult]:
        result = self._tx("request", seed, creator, preparer)
        return self._new_id(result, "SessionRequested", "id"), result

    def create(self, session_id: int, topic: str) -> TxResult:
        return self._tx("create", session_id, topic)

    def prepare(self, session_id: int, prompts: str) -> TxResult:
        return self._tx("prepare", session_id, prompts)

    def reassign(self, session_id: int, next_miner: str) -> TxResult:
        return self._tx("reassign", session_id, next_miner)

    def start(self, session_id: int, count: int) -> TxResult:
        return self._tx("start", session_id, count)

    def precommit(self, session_id: int, commitment_: bytes) -> TxResult:
        return self._tx("precommit", session_id, commitment_)

    def commit(self, session_id: int, answer: str, salt: bytes) -> TxResult:
        return self._tx("commit", session_id, answer, salt)

    def close_window(self, session_id: int) -> TxResult:
        return self._tx("closeWindow", session_id)

    def end(self, session_id: int, scores: list[int]) -> TxResult:
        return self._tx("end", session_id, scores)

    def state(self, session_id: int) -> int:
        return int(self._call("sessions", session_id)[0])

    def deadline(self, session_id: int) -> int:
        return int(self._call("sessions", session_id)[1])

    def selected(self, session_id: int) -> list[str]:
        return [str(a) for a in self._call("selected", session_id)]

    def slot_status(self, session_id: int, miner: str) -> int:
        return int(self._call("slots", session_id, miner)[0])


class SessionQueue(ContractWrapper):
    """User tasks: submit -> assign -> ack -> precommit -> commit -> validate."""

    name = "SessionQueue"

    def open_session(
        self, model: bytes, precision: int, validation_level: int, k: int, price: int
    ) -> tuple[int, TxResult]:
        result = self._tx("openSession", model, precision, validation_level, k, price)
        return self._new_id(result, "SessionOpened", "sessionId"), result

    def close_session(self, session_id: int) -> TxResult:
        return self._tx("closeSession", session_id)

    def submit_task(self, session_id: int, prompt: str) -> tuple[int, TxResult]:
        result = self._tx("submitTask", session_id, prompt)
        return self._new_id(result, "TaskQueued", "taskId"), result

    def assign(self, task_id: int, miners: list[str]) -> TxResult:
        return self._tx("assign", task_id, miners)

    def ack(self, task_id: int) -> TxResult:
        return self._tx("ack", task_id)

    def precommit(self, task_id: int, commitment_: bytes) -> TxResult:
        return self._tx("precommit", task_id, commitment_)

    def commit(self, task_id: int, answer: str, salt: bytes) -> TxResult:
        return self._tx("commit", task_id, answer, salt)

    def close_window(self, task_id: int, miners: list[str]) -> TxResult:
        return self._tx("closeWindow", task_id, miners)

    def validate(
        self, task_id: int, miners: list[str], scores: list[int], consensus: int
    ) -> TxResult:
        return self._tx("validate", task_id, miners, scores, consensus)

    def refund(self, task_id: int, miners: list[str]) -> TxResult:
        """The price back to the owner once the leader left the task for the task timeout
        (the owner, or a miner it reserves); `miners` is the assignment, [] while queued."""
        return self._tx("refund", task_id, miners)

    def set_min_price_per_token(self, wei_per_token: int) -> TxResult:
        """Admin only: the least a session pays each miner per answer token."""
        return self._tx("setMinPricePerToken", wei_per_token)

    def min_price(self, k: int) -> int:
        """The least price a session of redundancy k may offer now."""
        return int(self._call("minPrice", k))

    def state(self, task_id: int) -> int:
        return int(self._call("tasks", task_id)[1])

    def deadline(self, task_id: int) -> int:
        """A window's end; while Queued or Committed, when the task entered that state."""
        return int(self._call("tasks", task_id)[2])

    def refundable_at(self, task_id: int) -> int:
        """After this block time the task may be refunded (if still unfinished)."""
        return self.deadline(task_id) + int(self._call("taskTimeout"))

    def assignment(self, miner: str) -> tuple[int, int]:
        """(task id, status) of a miner's assignment: status 0 free, 1 assigned, 2 acked,
        3 precommitted, 4 committed."""
        task_id, status, _ = self._call("assignments", miner)
        return int(task_id), int(status)

    def reserved_for(self, node: str) -> int:
        """The user task a node is reserved for, 0 when free."""
        return int(self._call("reservedFor", node))


class SessionPayment(ContractWrapper):
    name = "SessionPayment"

    def deposit(self, amount_wei: int) -> TxResult:
        return self._tx("deposit", value=amount_wei)

    def withdraw_deposit(self, amount_wei: int) -> TxResult:
        return self._tx("withdrawDeposit", amount_wei)

    def withdraw(self) -> TxResult:
        """Send this node's whole balance to its registered payout address."""
        return self._tx("withdraw")

    def balance_of(self, node: str) -> int:
        return int(self._call("balances", node))

    def deposit_of(self, user: str) -> int:
        return int(self._call("depositOf", user))

    def escrowed_of(self, user: str) -> int:
        """What this user has locked in tasks not yet validated."""
        return int(self._call("escrowedOf", user))
