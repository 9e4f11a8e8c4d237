"""Benchmarks of the served model: one record shape for `inference bench` and a live node.

Both store into the `benchmarks` table, which the profiler's fit reads back as measured speed
(`profile` prefers a measurement to its estimate), and a live node also publishes the result.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.errors import ModelError, WorkerCrashedError
from engine.inference.runtime import llama_cpp_version
from engine.inference.types import BenchResult
from engine.node.generation import BenchableModel
from engine.state.database import Database
from engine.state.events import Alert, AlertKind, BenchmarkResult, Event, Severity

LIVE_BENCH_RUNS = 2
LIVE_BENCH_TOKENS = 32

# GGUF file names end in the quant: SmolLM2-135M-Instruct.Q4_1.gguf, model-q4_k_m.gguf, ...F16.gguf
_QUANT_IN_NAME = re.compile(r"(?i)[.\-_]((?:I?Q\d[A-Z0-9_]*)|BF16|F16|F32)$")


def quant_of_file(path: str | Path) -> str:
    """The quant a GGUF file's name says it holds; "unknown" when the name does not say."""
    match = _QUANT_IN_NAME.search(Path(path).stem)
    return match.group(1).upper() if match else "unknown"


def bench_document(
    result: BenchResult, model_id: str, quant: str, seconds: float, llama_version: str
) -> dict[str, Any]:
    """What is stored and printed for one benchmark (the `inference bench --json` document)."""
    return {
        "model": model_id,
        "quant": quant,
        "model_path": result.model,
        "prompt_tokens_per_s": round(result.prompt_tokens_per_s, 2),
        "gen_tokens_per_s": round(result.gen_tokens_per_s, 2),
        "prompt_tokens_per_s_runs": [round(x, 2) for x in result.prompt_tokens_per_s_runs],
        "gen_tokens_per_s_runs": [round(x, 2) for x in result.gen_tokens_per_s_runs],
        "prompt_tokens": result.prompt_tokens,
        "gen_tokens": result.gen_tokens,
        "runs": result.runs,
        "peak_rss_bytes": result.peak_rss_bytes,
        "output_sha256": result.output_sha256,
        "settings": asdict(result.settings),
        "llama_cpp_python": llama_version,
        "system_info": result.system_info,
        "seconds": round(seconds, 2),
    }


def store_benchmark(db: Database, document: dict[str, Any]) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO benchmarks (model_id, quant, created_at, result) VALUES (?, ?, ?, ?)",
            (document["model"], document["quant"], time.time(), json.dumps(document)),
        )


def benchmark_event(
    result: BenchResult, document: dict[str, Any], tier: str | None
) -> BenchmarkResult:
    return BenchmarkResult(
        model_id=str(document["model"]),
        quant=str(document["quant"]),
        prompt_tokens_per_s=float(document["prompt_tokens_per_s"]),
        gen_tokens_per_s=float(document["gen_tokens_per_s"]),
        ttft_s=round(result.extra.get("ttft_s", 0.0), 4),
        checksum=str(document["output_sha256"]),
        tier=tier,
    )


def live_benchmark(
    chat: BenchableModel,
    model_name: str,
    tier: str | None,
    db: Database,
    publish: Callable[[Event], None],
) -> None:
    """Benchmark a live node's served model (between two tasks), store and publish the result;
    a failure is an alert, not an error: the node goes on serving."""
    started = time.monotonic()
    try:
        result = chat.bench(runs=LIVE_BENCH_RUNS, gen_tokens=LIVE_BENCH_TOKENS)
    except (ModelError, WorkerCrashedError) as exc:
        publish(
            Alert(
                kind=AlertKind.WORKER_CRASH,
                severity=Severity.WARNING,
                message=f"benchmark failed: {exc}",
            )
        )
        return
    document = bench_document(
        result,
        model_name,
        quant_of_file(result.model),
        time.monotonic() - started,
        llama_cpp_version(),
    )
    store_benchmark(db, document)
    publish(benchmark_event(result, document, tier))
