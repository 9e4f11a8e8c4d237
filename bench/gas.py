"""Gas of one complete user task (k = 3, 500-token answers) on the in-process chain.

Prints the gas of every transaction of the task as the app's miners send it (submit, assign,
3 precommits (a precommit implies the ack), 3 commits, validate) and their total, once with
answers in calldata + events (the design) and once with answers also kept in contract storage
(what Cortensor's session struct does). The task runs twice on the same nodes and the second run
is reported: steady state, with the nodes' counters and balances already in storage. Also prints
what three explicit acks would add (a slow miner may ack early). Exits 1 when the design's total
exceeds 700,000 gas.

    PYTHONPATH=. .venv/bin/python bench/gas.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.devnet import EmbeddedChain, start_embedded
from chain.wrappers import commitment, model_id

TARGET = 700_000
K = 3
ANSWER_CHARS = 2000  # about 500 tokens of English
MODEL = model_id("smollm2-135m-instruct-q4_1")


def answer_text(miner_index: int) -> str:
    sentence = f"Miner {miner_index} explains the capital of France is Paris, a city on the Seine. "
    return (sentence * (ANSWER_CHARS // len(sentence) + 1))[:ANSWER_CHARS]


def setup(chain: EmbeddedChain) -> tuple[int, list]:  # type: ignore[type-arg]
    user = chain.client(chain.accounts[0])
    miners = [chain.client(a) for a in chain.accounts[1 : 1 + K]]
    for m in miners:
        m.registry.register(1, 4096, "0.1.0", [MODEL], m.address)
    oracle = chain.client(chain.oracles[0])
    # Eligibility threshold is 1 on devnets: one successful network task puts each in the pool.
    sid, _ = oracle.cognitive.request(b"\x01" * 32, miners[0].address, miners[1].address)
    miners[0].cognitive.create(sid, "geography")
    miners[1].cognitive.prepare(sid, '["capital of France?"]')
    oracle.cognitive.start(sid, K)
    chosen = oracle.cognitive.selected(sid)
    by_address = {m.address: m for m in miners}
    for a in chosen:
        by_address[a].cognitive.precommit(sid, commitment(sid, a, b"\x02" * 32, "Paris"))
    for a in chosen:
        by_address[a].cognitive.commit(sid, "Paris", b"\x02" * 32)
    oracle.cognitive.end(sid, [100] * K)
    user.payment.deposit(10**18)
    session, _ = user.queue.open_session(MODEL, 0, 1, K, 3 * 10**15)
    return session, miners


def one_task(
    chain: EmbeddedChain,
    session: int,
    miners: list,  # type: ignore[type-arg]
    explicit_ack: bool = False,
) -> list[tuple[str, int]]:
    user = chain.client(chain.accounts[0])
    oracle = chain.client(chain.oracles[0])
    rows: list[tuple[str, int]] = []
    task, r = user.queue.submit_task(session, "What is the capital of France? Explain.")
    rows.append(("submitTask (user, escrow)", r.gas_used))
    addresses = [m.address for m in miners]
    rows.append(("assign (oracle, reserve 3)", oracle.queue.assign(task, addresses).gas_used))
    if explicit_ack:
        for i, m in enumerate(miners):
            rows.append((f"ack miner {i}", m.queue.ack(task).gas_used))
    salt = b"\x07" * 32
    for i, m in enumerate(miners):
        c = commitment(task, m.address, salt, answer_text(i))
        rows.append((f"precommit miner {i}", m.queue.precommit(task, c).gas_used))
    for i, m in enumerate(miners):
        rows.append(
            (
                f"commit miner {i} ({ANSWER_CHARS} chars)",
                m.queue.commit(task, answer_text(i), salt).gas_used,
            )
        )
    r = oracle.queue.validate(task, addresses, [90, 90, 90], 0)
    rows.append(("validate (oracle, pay 3)", r.gas_used))
    return rows


def measure(queue_contract: str, explicit_ack: bool = False) -> list[tuple[str, int]]:
    chain = start_embedded(queue_contract=queue_contract)
    session, miners = setup(chain)
    one_task(chain, session, miners, explicit_ack)  # first task: cold storage
    return one_task(chain, session, miners, explicit_ack)


def main() -> int:
    design = measure("SessionQueue")
    stored = measure("StoredAnswersQueue")
    print(f"one user task, k={K}, answers of {ANSWER_CHARS} chars (~500 tokens), steady state")
    print(f"{'transaction':40} {'calldata+events':>16} {'answers stored':>16}")
    for (name, gas), (_, gas_stored) in zip(design, stored, strict=True):
        print(f"{name:40} {gas:>16,} {gas_stored:>16,}")
    total, total_stored = sum(g for _, g in design), sum(g for _, g in stored)
    print(f"{'total':40} {total:>16,} {total_stored:>16,}")
    with_acks = sum(g for _, g in measure("SessionQueue", explicit_ack=True))
    print(f"with an explicit ack from every miner: {with_acks:,} (+{with_acks - total:,})")
    verdict = "within" if total <= TARGET else "OVER"
    print(
        f"gas per user task (k={K}, 500-token answers): {total:,} ({verdict} target {TARGET:,}); "
        f"storing answers would cost {total_stored:,} ({total_stored / total:.1f}x)"
    )
    return 0 if total <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
