"""How a task's cost grows with the pool: 8, 64 and 512 registered miners on anvil.

For each pool size a fresh anvil gets the contracts and N registered miners. Eight of them are
real nodes (engine Miner objects with the real SmolLM2 model: one chat worker shared by all of
them and the oracle's validator, one embedding worker); the others are accounts that registered
and then marked themselves away (paused), so on-chain selection skips them instead of waiting
for an answer that never comes: they are in the registry's list that the contracts and the nodes
would have to walk. The nodes are stepped round-robin in this one thread (oracle, then each
miner), so the number of steps a task takes does not depend on how fast the model is.

Warm-up per size: one network task and one user task that select every answering node (each
passing node joins the user-task pool, every node's per-miner storage is written once), then the
first user task of a session (deposit, session). Measured, per network task (k = 3) and per user
task (the session's next one, k = 3): the gas of every transaction, the oracle's RPC calls and
CPU seconds (its thread's CPU time inside `step()`), and the time from request to end. A first
round counts the oracle's Python function calls (cProfile): work that a busy machine cannot
blur. Then the sizes are measured side by side: all their anvils stay up and each of
`--repeats` rounds runs one network and one user task on every size in turn, so a busy spell
on the shared machine lands on all of them alike. CPU seconds count as the least of the
repeats (identical work, which a shared machine only ever slows down), calls and time as the
median. The target: gas per task and the oracle's work per task (RPC calls, Python calls, CPU
seconds) grow by at most 10 % from the smallest pool to the largest. The one allowance, for
CPU seconds only: a growth past 10 % that stays inside the spread between the repeats of one
size (the same work, measured side by side) is not told apart from the machine's noise, and
the bench says so next to the figure; the call counts are held to 10 % as they are. What
does differ between sizes is anvil: its time per block grows with the accounts in its state
(measured: a transfer's receipt after about 4 ms on a fresh anvil, 14 ms with 500 more funded
accounts, 20 ms after 512 registrations; 1,100 empty blocks change nothing), so the oracle's
sender polls for a receipt once more per transaction (printed: the RPC methods whose counts
differ), with anvil busy on the same cores meanwhile. The last line is the headline; exit 1
past the target.

    PYTHONPATH=. .venv/bin/python bench/pool_scale.py [--sizes 8,64,512] [--answering 8]
        [--repeats 5] [--profile DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from web3 import Web3

from chain.client import ChainClient, Deployment, connect
from chain.devnet import AnvilProcess, LocalDevnet, deploy_on_anvil, new_funded_account
from chain.errors import ChainError
from chain.events import EventCursor
from chain.rpc import HttpBackend, RetryPolicy
from chain.wrappers import Tier, model_id
from engine.host.embedded_network import DEVNET_PARAMS
from engine.inference.runtime import InferenceWorker
from engine.models.store import ModelStore
from engine.node.miner import Miner, MinerSettings
from engine.node.oracle import Oracle, OracleSettings
from engine.node.pool_index import PoolIndex
from engine.node.user_session import DEFAULT_PRICE_WEI, submit_user_task
from engine.poi.validator import Validator
from engine.state.database import Database
from engine.state.events import EventBus
from engine.state.journal import ChainKey, Journal
from profiler.load_settings import LoadSettings

TARGET_GROWTH = 0.10
TOKENS = 24
K = 3
PROMPT = "Name one planet of the solar system."
NETWORK_LABELS = {
    "SessionRequested": "request",
    "TopicCreated": "create",
    "ChallengePrepared": "prepare",
    "SessionStarted": "start",
    "Precommitted": "precommit",
    "AnswerRevealed": "commit",
    "SessionEnded": "end",
    "RoleReassigned": "reassign",
}
USER_LABELS = {
    "TaskQueued": "submit",
    "TaskAssigned": "assign",
    "TaskPrecommitted": "precommit",
    "TaskAnswer": "commit",
    "TaskValidated": "validate",
}


class CallCounter:
    """Counts the JSON-RPC requests one client's provider makes, by method."""

    def __init__(self, client: ChainClient) -> None:
        self.calls: Counter[str] = Counter()
        provider = client.web3.provider
        original = provider.make_request

        def counted(method: Any, params: Any) -> Any:
            self.calls[str(method)] += 1
            return original(method, params)

        provider.make_request = counted  # type: ignore[method-assign]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class TaskFigures:
    gas: dict[str, list[int]] = field(default_factory=dict)  # label -> gas of each tx
    oracle_calls: int = 0
    oracle_py_calls: int = 0  # Python function calls in the oracle's steps (a counted round)
    oracle_cpu_s: float = 0.0
    seconds: float = 0.0
    methods: Counter[str] = field(default_factory=Counter)  # the oracle's RPC calls by method
    cpu_spread: float = 0.0  # combined: how far the slowest repeat is above the fastest

    @property
    def total_gas(self) -> int:
        return sum(sum(v) for v in self.gas.values())


@dataclass
class Network:
    size: int
    anvil: AnvilProcess
    devnet: LocalDevnet
    reader: ChainClient
    oracle: Oracle
    miners: list[Miner]
    counter: CallCounter
    allowed_sessions: int = 0
    oracle_cpu_s: float = 0.0
    oracle_errors: list[str] = field(default_factory=list)
    profiler: cProfile.Profile | None = None  # the counted round: the oracle's steps
    user: ChainClient | None = None  # the measured user tasks' owner and session
    session: int | None = None
    py_calls: tuple[int, int] = (0, 0)  # the counted round's (network, user) Python calls

    def round(self) -> None:
        """One oracle step, then the miners until none of them sends anything more: each
        oracle step sees everything the miners did in answer to the last one, so the steps a
        task takes (and the oracle's calls) depend on the protocol, not on timing."""
        started = time.thread_time()
        if self.profiler is not None:
            self.profiler.enable()
        try:
            self.oracle.step()
        except ChainError as exc:  # as Oracle.run does: log it, the next step tries again
            self.oracle_errors.append(str(exc))
            print(f"pool {self.size}: oracle: {exc}", flush=True)
        finally:
            if self.profiler is not None:
                self.profiler.disable()
        self.oracle_cpu_s += time.thread_time() - started
        web3 = self.reader.web3
        while True:
            before = int(web3.eth.block_number)
            for miner in self.miners:
                miner.step()
            if int(web3.eth.block_number) == before:
                return

    def run_until(self, done: Any, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"pool {self.size}: the task did not finish in {timeout_s:.0f} s")
            self.round()


def _client(devnet: LocalDevnet, account: Any) -> ChainClient:
    backend = HttpBackend([devnet.rpc_url], RetryPolicy(rounds=2, backoff_s=0.05))
    return ChainClient(backend, Deployment(devnet.chain_id, devnet.contracts), account)


def build(size: int, answering: int, chat: Any, embedder: Any, folder: Path) -> Network:
    anvil = AnvilProcess().start()
    devnet = deploy_on_anvil(anvil, oracles=1, params=DEVNET_PARAMS)
    reader = connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts)
    web3 = reader.web3
    db = Database(folder / f"pool-{size}.sqlite3")
    key = ChainKey(devnet.chain_id, devnet.genesis_hash)
    bus = EventBus()
    settings = MinerSettings(
        answer_max_tokens=TOKENS, prompts_per_session=1, poll_interval_s=0.2, ping_interval_s=3600
    )
    model = model_id(settings.model_name)
    # The real nodes spread evenly through the registry's list, as they would be in a pool.
    real = {i * size // answering for i in range(answering)}
    miners: list[Miner] = []
    for position in range(size):
        account = new_funded_account(web3)
        if position in real:
            miner = Miner(
                _client(devnet, account), chat, Journal(db, key, account.address), bus, settings
            )
            miner.preflight()
            miners.append(miner)
            continue
        idle = _client(devnet, account)
        idle.registry.register(Tier.CPU_LOW, 0, "0.1.0", [model], account.address)
        idle.registry.set_away(True)
    oracle_account = devnet.oracles[0]
    oracle_client = _client(devnet, oracle_account)
    oracle = Oracle(
        oracle_client,
        Validator(chat, embedder),
        Journal(db, key, oracle_account.address),
        bus,
        OracleSettings(
            task_interval_s=0,
            miners_per_task=K,
            answer_max_tokens=TOKENS,
            poll_interval_s=0.2,
            role_cooldown_s=0,
        ),
    )
    counter = CallCounter(oracle_client)
    network = Network(size, anvil, devnet, reader, oracle, miners, counter)
    original = oracle._request_if_due

    def gated() -> None:  # one session at a time, when the bench asks (read outside the count)
        if int(reader.cognitive.call("sessionCount")) < network.allowed_sessions:
            original()

    oracle._request_if_due = gated  # type: ignore[method-assign]
    oracle.start()
    return network


def _gas_of(
    reader: ChainClient, contract: Any, labels: dict[str, str], key: str, ident: int
) -> dict[str, list[int]]:
    """Gas of every transaction from the task's first to its last event, labelled by the
    event it emitted; a transaction without one (reverted: out of gas, refused) is "failed",
    and counts: the task paid for it. Nothing else runs meanwhile (pings are off)."""
    by_tx: dict[str, str] = {}
    blocks: list[int] = []
    for name, label in labels.items():
        for event in EventCursor(contract.name, contract.contract, name, 0).poll():
            if int(event.args[key]) == ident:
                by_tx.setdefault(event.tx_hash, label)
                blocks.append(event.block_number)
    web3 = reader.web3
    gas: dict[str, list[int]] = {}
    for number in range(min(blocks), max(blocks) + 1):
        for tx_hash in web3.eth.get_block(number)["transactions"]:
            hex_hash = Web3.to_hex(tx_hash)  # type: ignore[arg-type]
            used = int(web3.eth.get_transaction_receipt(hex_hash)["gasUsed"])
            gas.setdefault(by_tx.get(hex_hash, "failed"), []).append(used)
    return gas


def network_task(net: Network) -> TaskFigures:
    net.allowed_sessions += 1
    session = net.allowed_sessions
    cognitive = net.reader.cognitive
    calls, cpu, started = net.counter.total, net.oracle_cpu_s, time.monotonic()
    methods = Counter(net.counter.calls)
    net.run_until(lambda: cognitive.state(session) == 7)  # Ended
    figures = TaskFigures(
        oracle_calls=net.counter.total - calls,
        methods=net.counter.calls - methods,
        oracle_cpu_s=net.oracle_cpu_s - cpu,
        seconds=time.monotonic() - started,
    )
    figures.gas = _gas_of(net.reader, cognitive, NETWORK_LABELS, "id", session)
    return figures


def user_task(
    net: Network, user: ChainClient, session: int | None, k: int = K
) -> tuple[TaskFigures, int]:
    model = net.miners[0].settings.model_name
    calls, cpu, started = net.counter.total, net.oracle_cpu_s, time.monotonic()
    methods = Counter(net.counter.calls)
    price = DEFAULT_PRICE_WEI * k // K  # the same per answer at any redundancy
    submitted = submit_user_task(user, model, PROMPT, k, price_wei=price, session_id=session)
    queue = net.reader.queue
    net.run_until(lambda: queue.state(submitted.task_id) == 5)  # Validated
    figures = TaskFigures(
        oracle_calls=net.counter.total - calls,
        methods=net.counter.calls - methods,
        oracle_cpu_s=net.oracle_cpu_s - cpu,
        seconds=time.monotonic() - started,
    )
    figures.gas = _gas_of(net.reader, queue, USER_LABELS, "taskId", submitted.task_id)
    return figures, submitted.session_id


def warm_up(net: Network, answering: int) -> None:
    """One network task and one user task that select every answering node: each passing
    node joins the user-task pool, and every node's per-miner storage (last selection, stats,
    assignment) is written once, so the measured tasks meet warm storage whichever nodes they
    pick and the pool sizes compare like for like."""
    oracle = net.oracle
    measured = oracle.settings
    oracle.settings = dataclasses.replace(measured, miners_per_task=answering)
    try:
        network_task(net)
    finally:
        oracle.settings = measured
    pool = PoolIndex(net.reader)  # the registry as of now (the oracle's reads to its last step)
    pool.refresh()
    pooled = sum(1 for m in pool.members() if m.pooled)
    if pooled < K:
        raise SystemExit(f"pool {net.size}: only {pooled} of {answering} nodes passed the warm-up")
    if pooled < answering:  # a failed answer stays out of the user-task pool: less to warm up
        print(f"pool {net.size}: {pooled} of {answering} nodes passed the warm-up", flush=True)
    user = _client(net.devnet, new_funded_account(net.reader.web3))
    user_task(net, user, None, k=pooled)


def _counted(net: Network, profile_dir: Path | None, name: str, task: Any) -> Any:
    """Run `task` (returning TaskFigures first) under cProfile, which counts every Python
    function call in the oracle's steps: the same count every time for the same work, however
    busy the machine. With --profile the stats go to DIR/pool-N-NAME.pstats."""
    net.profiler = cProfile.Profile()
    try:
        result = task()
    finally:
        profiler, net.profiler = net.profiler, None
    stats = pstats.Stats(profiler)
    figures = result[0] if isinstance(result, tuple) else result
    figures.oracle_py_calls = int(stats.total_calls)  # type: ignore[attr-defined]
    if profile_dir is not None:
        stats.dump_stats(profile_dir / f"pool-{net.size}-{name}.pstats")
    return result


def prepare(size: int, answering: int, chat: Any, embedder: Any, folder: Path) -> Network:
    started = time.monotonic()
    net = build(size, answering, chat, embedder, folder)
    try:
        warm_up(net, answering)
        net.user = _client(net.devnet, new_funded_account(net.reader.web3))
        _, net.session = user_task(net, net.user, None)  # warm-up: deposit and session
    except BaseException:
        net.anvil.stop()
        raise
    print(
        f"pool {size}: {size} registered, {answering} answering, set up and warmed up in "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    return net


def measure(
    nets: dict[int, Network], repeats: int, profile_dir: Path | None
) -> dict[int, list[tuple[TaskFigures, TaskFigures]]]:
    """First a counted round (one network and one user task per size under cProfile: the
    oracle's Python calls), then `repeats` timed rounds, the sizes side by side in each: a
    busy spell on the shared machine lands on every size alike."""
    runs: dict[int, list[tuple[TaskFigures, TaskFigures]]] = {size: [] for size in nets}
    for size, net in nets.items():
        network, user = count_once(net, profile_dir)
        net.py_calls = (network.oracle_py_calls, user.oracle_py_calls)
        print(
            f"pool {size} counted: oracle Python calls {network.oracle_py_calls:,} / "
            f"{user.oracle_py_calls:,}, RPC calls {network.oracle_calls} / {user.oracle_calls}",
            flush=True,
        )
    for repeat in range(repeats):
        for size, net in nets.items():
            network, user = measure_once(net)
            network.oracle_py_calls, user.oracle_py_calls = net.py_calls
            runs[size].append((network, user))
            print(
                f"pool {size} repeat {repeat + 1}: oracle CPU s {network.oracle_cpu_s:.3f} / "
                f"{user.oracle_cpu_s:.3f}, RPC calls {network.oracle_calls} / "
                f"{user.oracle_calls}",
                flush=True,
            )
    return runs


def count_once(net: Network, profile_dir: Path | None) -> tuple[TaskFigures, TaskFigures]:
    """One network task and one user task, their oracle steps under cProfile."""
    owner, session = net.user, net.session
    assert owner is not None and session is not None, "prepare() first"
    network = _counted(net, profile_dir, "network", lambda: network_task(net))
    user, _ = _counted(net, profile_dir, "user", lambda: user_task(net, owner, session))
    return network, user


def measure_once(net: Network) -> tuple[TaskFigures, TaskFigures]:
    """One network task, then one user task of the warmed-up session."""
    owner, session = net.user, net.session
    assert owner is not None and session is not None, "prepare() first"
    network = network_task(net)
    user, _ = user_task(net, owner, session)
    return network, user


def combine(runs: list[TaskFigures]) -> TaskFigures:
    """One task's figures from its repeats. CPU seconds: the least. The work is the same each
    time (the same calls, see below) and a shared machine only ever adds to it (another
    process on the core or its cache), so the least is the closest to the work itself.
    Calls and wall time: the median. Gas: the repeat of median gas (the model's topic, prompts
    and answers differ in length between tasks, and the gas with them)."""
    by_gas = sorted(runs, key=lambda f: f.total_gas)
    cpu = [f.oracle_cpu_s for f in runs]
    return TaskFigures(
        methods=runs[0].methods,
        cpu_spread=growth(min(cpu), max(cpu)),
        gas=by_gas[len(by_gas) // 2].gas,
        oracle_calls=int(statistics.median(f.oracle_calls for f in runs)),
        oracle_py_calls=runs[0].oracle_py_calls,
        oracle_cpu_s=min(f.oracle_cpu_s for f in runs),
        seconds=statistics.median(f.seconds for f in runs),
    )


def growth(first: float, last: float) -> float:
    return (last - first) / first if first else 0.0


def report(runs: dict[int, list[tuple[TaskFigures, TaskFigures]]]) -> int:
    results = {
        size: (combine([n for n, _ in pairs]), combine([u for _, u in pairs]))
        for size, pairs in runs.items()
    }
    repeats = len(next(iter(runs.values())))
    print()
    print(
        f"oracle Python calls: one counted round per size (cProfile); then {repeats} timed "
        "rounds, the sizes side by side: CPU the least of them, RPC calls and time the median, "
        "gas the round of median gas"
    )
    print(
        "| miners | network task gas | user task gas | oracle RPC calls (network / user) "
        "| oracle Python calls (network / user) | oracle CPU s (network / user) "
        "| request to end s (network / user) |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, (net, user) in results.items():
        print(
            f"| {size} | {net.total_gas:,} | {user.total_gas:,} | {net.oracle_calls} / "
            f"{user.oracle_calls} | {net.oracle_py_calls:,} / {user.oracle_py_calls:,} | "
            f"{net.oracle_cpu_s:.3f} / {user.oracle_cpu_s:.3f} | "
            f"{net.seconds:.1f} / {user.seconds:.1f} |"
        )
    print()
    for size, (net, user) in results.items():
        for kind, figures in (("network", net), ("user", user)):
            parts = ", ".join(
                f"{label} {' + '.join(f'{g:,}' for g in gas)}" for label, gas in figures.gas.items()
            )
            print(f"pool {size} {kind} task gas: {parts}")
    sizes = sorted(results)
    small, large = results[sizes[0]], results[sizes[-1]]
    checks = {
        "gas/network task": growth(small[0].total_gas, large[0].total_gas),
        "gas/user task": growth(small[1].total_gas, large[1].total_gas),
        "oracle calls/network task": growth(small[0].oracle_calls, large[0].oracle_calls),
        "oracle calls/user task": growth(small[1].oracle_calls, large[1].oracle_calls),
        "oracle Python calls/network task": growth(
            small[0].oracle_py_calls, large[0].oracle_py_calls
        ),
        "oracle Python calls/user task": growth(small[1].oracle_py_calls, large[1].oracle_py_calls),
    }
    failed = [name for name, g in checks.items() if g > TARGET_GROWTH]
    print()
    for index, kind in enumerate(("network", "user")):
        before, after = small[index].methods, large[index].methods
        moved = [
            f"{m} {before[m]} -> {after[m]}"
            for m in sorted(before | after)
            if before[m] != after[m]
        ]
        print(f"oracle RPC calls per {kind} task that differ: {', '.join(moved) or 'none'}")
    notes: dict[str, str] = {}
    excused: dict[str, str] = {}
    for index, kind in enumerate(("network", "user")):
        name = f"oracle CPU/{kind} task"
        checks[name] = growth(small[index].oracle_cpu_s, large[index].oracle_cpu_s)
        # The same work on the same size spreads this much between repeats: a difference
        # between sizes inside it is the machine, not the pool (and the counts say so).
        noise = max(pair[index].cpu_spread for pair in results.values())
        notes[name] = f" (repeats of one size spread up to {noise:.1%})"
        if checks[name] > max(TARGET_GROWTH, noise):
            failed.append(name)
        elif checks[name] > TARGET_GROWTH:
            excused[name] = f" (inside the {noise:.0%} spread of one size's repeats)"
    for name, g in checks.items():
        print(f"{name}: {g:+.1%} from {sizes[0]} to {sizes[-1]} miners{notes.get(name, '')}")
    verdict = "within" if not failed else f"PAST ({', '.join(failed)})"
    headline = ", ".join(f"{name} {g:+.1%}{excused.get(name, '')}" for name, g in checks.items())
    print(
        f"pool_scale {sizes[0]}->{sizes[-1]} miners: {headline}; {verdict} the "
        f"{TARGET_GROWTH:.0%} target"
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,64,512")
    parser.add_argument(
        "--answering",
        type=int,
        default=8,
        help="real answering nodes (default 8, as the issue asks; a warm-up task selects all "
        "of them, so the measured ones meet warm storage whichever they pick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed rounds per size, interleaved (default 5; the least CPU counts)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also write the counted round's cProfile stats of the oracle's steps to DIR",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if min(sizes) < args.answering or args.answering < K:
        parser.error(f"every size must be at least --answering, which must be at least {K}")
    store = ModelStore(Path(os.environ.get("CORTENSOR_MODELS", tempfile.mkdtemp(prefix="models-"))))
    chat_path = store.pull(store.default_chat_model().id)
    embed_path = store.pull(store.catalogue.of_kind("embedding")[0].id)
    chat = InferenceWorker(chat_path, LoadSettings(n_threads=1), kind="chat")
    embedder = InferenceWorker(embed_path, LoadSettings(n_ctx=512, n_threads=1), kind="embedding")
    chat.start()
    embedder.start()
    nets: dict[int, Network] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="pool-scale-") as folder:
            for size in sizes:
                nets[size] = prepare(size, args.answering, chat, embedder, Path(folder))
            runs = measure(nets, args.repeats, args.profile)
    finally:
        for net in nets.values():
            net.anvil.stop()
        chat.close()
        embedder.close()
    return report(runs)


if __name__ == "__main__":
    sys.exit(main())
