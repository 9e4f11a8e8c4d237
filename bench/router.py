"""The router against `ask`: the same prompts, the same network, one run.

One embedded network (3 miners, one oracle, real llama.cpp; network tasks off once the miners
are in the pool). Each prompt goes once through `ask`'s flow (engine/node/user_session.py:
wait for the pool, deposit, submit into the user's session, follow the events) and once
through the router with the real
`openai` client (/v1/completions: the same plain prompt, the same answer limit), interleaved so
drifting machine load hits both alike. Then 4 openai clients at once against sequential `ask`:
requests answered per minute.

k (`--k`, default 1) is below the pool's size on purpose: with k equal to the miners (3 of 3)
every task needs every miner, which the contract reserves until validation, so no two tasks can
ever run at once and concurrency has nothing to add (measured 0.97x). With k = 1, three tasks
can be on the network at once: what a router with several clients is for.

Targets: router p50 latency / ask p50 latency <= 1.05 (the front costs nothing that matters next
to a validated task), and router requests per minute under 4 concurrent clients >= sequential
`ask` (the router keeps the network busy: the next task is queued while one validates).
Exit 1 on a miss; the headline is the last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from platformdirs import user_cache_dir

from chain.wrappers import NodeStatus
from cortensor_desktop.hosting.router_host import embedded_router
from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
from engine.models.store import ModelStore
from engine.node.miner import MinerSettings
from engine.node.oracle import OracleSettings
from engine.node.pool_index import PoolIndex
from engine.node.router import RouterSettings
from engine.node.user_session import submit_user_task, wait_for_outcome, wait_for_pool
from engine.state.database import Database
from engine.state.events import EventBus

LATENCY_TARGET = 1.05
THROUGHPUT_TARGET = 1.0
PROMPTS = [
    "Name a colour of the rainbow.",
    "What is the largest ocean?",
    "Give one word that rhymes with cat.",
    "How many legs does a spider have?",
    "Name a planet of the solar system.",
    "What do bees make?",
    "Name a fruit that is yellow.",
    "What is two plus three?",
]


class AskUser:
    """`ask`'s flow in this process, reusing its session after the first task as `ask` does.

    It keeps its pool index across tasks, as the router does. One `ask` command reads the pool
    fresh (every registry event since deploy), which on the in-process chain costs seconds that
    grow with the chain (eth-tester's eth_getLogs walks every block): with `--fresh-ask` the
    bench does that too, but then the ratio measures that read, not what the router adds."""

    def __init__(
        self, network: EmbeddedNetwork, account_index: int, k: int, fresh: bool = False
    ) -> None:
        chain = network.chain
        assert chain is not None
        self.client = chain.client(chain.accounts[account_index])
        self.model = network.settings.miner_settings().model_name
        self.session: int | None = None
        self.k = k
        self.fresh = fresh
        self.pool = PoolIndex(self.client)

    def ask(self, prompt: str) -> float:
        started = time.monotonic()
        deadline = started + 600
        pool = PoolIndex(self.client) if self.fresh else self.pool
        wait_for_pool(self.client, self.model, "quantized", self.k, deadline, pool=pool)
        submitted = submit_user_task(
            self.client,
            self.model,
            prompt,
            self.k,
            "quantized",
            session_id=self.session,
            pool=pool,
        )
        self.session = submitted.session_id
        outcome = wait_for_outcome(self.client, submitted, deadline)
        assert outcome.answer is not None or outcome.miners
        return time.monotonic() - started


NO_CONSENSUS: list[str] = []  # prompts whose task validated with no passing answer (a 502)


def routed_once(client: object, model: str, prompt: str) -> float:
    """One validated task through the router; a 502 (validated, no answer passed) is a
    finished task too (`ask` returns the same outcome with no answer), so it is timed."""
    import openai

    started = time.monotonic()
    try:
        reply = client.completions.create(model=model, prompt=prompt)  # type: ignore[attr-defined]
    except openai.InternalServerError as exc:
        if exc.status_code != 502:
            raise
        NO_CONSENSUS.append(prompt)
    else:
        assert reply.model_extra["cortensor"]["task_id"] > 0
    return time.monotonic() - started


def wait_for_miners(network: EmbeddedNetwork, timeout_s: float = 600) -> None:
    assert network.chain is not None
    registry = network.chain.client().registry
    deadline = time.monotonic() + timeout_s
    while not all(
        registry.node_info(m.address).status == NodeStatus.EPHEMERAL for m in network.miners
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the miners did not join the user pool in time")
        time.sleep(0.5)


def concurrent_rate(client_factory: object, model: str, clients: int, each: int) -> float:
    """Requests answered per minute with `clients` openai clients sending `each` in a row."""
    answered: list[float] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        client = client_factory()  # type: ignore[operator]
        for turn in range(each):
            latency = routed_once(client, model, PROMPTS[(index + turn) % len(PROMPTS)])
            with lock:
                answered.append(latency)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 60 * len(answered) / (time.monotonic() - started)


def paired(user: AskUser, api: object, model: str, count: int) -> tuple[list[float], list[float]]:
    """Each prompt through `ask` and through the router, who goes first alternating."""
    asked: list[float] = []
    routed: list[float] = []
    for i in range(count):
        prompt = PROMPTS[i % len(PROMPTS)]
        if i % 2 == 0:
            asked.append(user.ask(prompt))
            routed.append(routed_once(api, model, prompt))
        else:
            routed.append(routed_once(api, model, prompt))
            asked.append(user.ask(prompt))
        print(f"{prompt!r}: ask {asked[-1]:.1f} s, router {routed[-1]:.1f} s", flush=True)
    return asked, routed


def main() -> int:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5, help="prompts through each path")
    parser.add_argument("--each", type=int, default=2, help="requests per concurrent client")
    parser.add_argument(
        "--answer-tokens", type=int, default=64, help="the miners' and oracle's answer limit"
    )
    parser.add_argument("--k", type=int, default=1, help="miners per task (redundancy)")
    parser.add_argument("--miners", type=int, default=3, help="miners on the network")
    parser.add_argument(
        "--fresh-ask", action="store_true", help="ask reads the pool afresh for each task"
    )
    args = parser.parse_args()
    if not 1 <= args.k <= args.miners:
        parser.error("--k must be from 1 to --miners")
    models = Path(user_cache_dir("cortensor-desktop", appauthor=False)) / "models"
    store = ModelStore(models)
    model = store.default_chat_model().id
    store.pull(model)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "db.sqlite3")
        settings = EmbeddedNetworkSettings(
            miners=args.miners,
            miner=MinerSettings(answer_max_tokens=args.answer_tokens),
            oracle=OracleSettings(task_interval_s=3600, answer_max_tokens=args.answer_tokens),
        )
        network = EmbeddedNetwork(db, models, EventBus(), settings)
        network.start()
        server = None
        try:
            wait_for_miners(network)
            server = embedded_router(
                network, db, models, "127.0.0.1", 0, RouterSettings(redundancy=args.k, max_queue=8)
            )
            assert server is not None
            server.start()
            url = server.url

            def client() -> object:
                return openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=900)

            user = AskUser(network, len(network.miners) + 1, args.k, args.fresh_ask)
            api = client()
            user.ask(PROMPTS[-1])  # both open their session first: not part of the figures
            routed_once(api, model, PROMPTS[-1])
            asked, routed = paired(user, api, model, args.prompts)
            rate = concurrent_rate(client, model, 4, args.each)
        finally:
            if server is not None:
                server.stop()
            network.stop()
    ask_p50, router_p50 = statistics.median(asked), statistics.median(routed)
    ratio = router_p50 / ask_p50
    ask_rate = 60 / statistics.mean(asked)
    rate_ratio = rate / ask_rate
    ok = ratio <= LATENCY_TARGET and rate_ratio >= THROUGHPUT_TARGET
    print(
        f"ask p50 {ask_p50:.1f} s, router p50 {router_p50:.1f} s ({args.prompts} prompts each, "
        f"k = {args.k} of {args.miners} miners, answers up to {args.answer_tokens} tokens"
        + (", ask reading the pool afresh each time)" if args.fresh_ask else ")")
    )
    if NO_CONSENSUS:
        print(f"validated with no passing answer (502): {len(NO_CONSENSUS)} router requests")
    print(
        f"4 concurrent router clients: {rate:.1f} req/min; sequential ask: {ask_rate:.1f} req/min"
    )
    print(
        f"router (k = {args.k}): p50 latency ratio {ratio:.3f} (target <= {LATENCY_TARGET}), "
        f"throughput {rate:.1f} vs {ask_rate:.1f} req/min = {rate_ratio:.2f}x (target >= "
        f"{THROUGHPUT_TARGET}): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
