"""`generate`, `embed` and `bench`: one-off inference through the contained llama.cpp worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortensor_desktop.cli.context import AppContext

if TYPE_CHECKING:
    from engine.models.store import ModelStore
    from profiler.catalogue import ModelEntry
    from profiler.load_settings import LoadSettings

log = logging.getLogger(__name__)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    generate = subparsers.add_parser(
        "generate",
        parents=[common],
        help="one completion through the model's chat template (greedy by default)",
        description="Run one prompt through a model's chat template in the inference worker and "
        "print the answer with its figures. Greedy with a fixed seed unless --temperature. "
        "Without --model: the default chat model, installed on first use.",
    )
    generate.add_argument(
        "prompt", metavar="PROMPT", help="the user message, or - to read it from standard input"
    )
    generate.add_argument("--model", metavar="ID|PATH", help="catalogue id or a GGUF file")
    generate.add_argument("--max-tokens", type=_at_least(1), help="new tokens at most")
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    generate.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")
    generate.add_argument("--raw", action="store_true", help="no chat template: plain completion")
    add_json_flag(generate)
    generate.set_defaults(handler=_generate)

    embed = subparsers.add_parser(
        "embed",
        parents=[common],
        help="embedding vector of a text (all-MiniLM-L6-v2)",
        description="Embed TEXT with the catalogue's embedding model (mean pooled, unit length), "
        "installed on first use.",
    )
    embed.add_argument("text", metavar="TEXT", help="the text to embed")
    embed.add_argument("--model", metavar="ID|PATH", help="embedding model id or GGUF file")
    add_json_flag(embed)
    embed.set_defaults(handler=_embed)

    bench = subparsers.add_parser(
        "bench",
        parents=[common],
        help="measure prompt and generation tokens/s, store them for the fit",
        description="Benchmark a model in the inference worker: prompt and generation tokens/s "
        "(median of --runs), peak memory, and a sha256 of the greedy output for a fixed prompt "
        "(same build and model give the same checksum). The result is stored in the database, "
        "where the profiler's fit reads it.",
    )
    bench.add_argument("--model", metavar="ID|PATH", help="catalogue id or a GGUF file")
    bench.add_argument("--runs", type=_at_least(1), default=3, help="timed runs (default 3)")
    bench.add_argument("--tokens", type=_at_least(2), default=64, help="tokens a run (default 64)")
    add_json_flag(bench)
    bench.set_defaults(handler=_bench)


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        return value

    return parse


def _threads(ctx: AppContext) -> int:
    configured = ctx.config.inference.threads
    return configured if configured > 0 else max(1, (os.cpu_count() or 2) // 2)


def _settings(ctx: AppContext, n_ctx: int | None = None) -> LoadSettings:
    from profiler.load_settings import LoadSettings

    return LoadSettings(n_ctx=n_ctx or ctx.config.inference.context, n_threads=_threads(ctx))


def _say(ctx: AppContext, text: str) -> None:
    """Notes for the user go to stderr, so stdout stays the answer (or the one JSON document)."""
    print(text, file=sys.stderr)


def _resolve(
    ctx: AppContext, store: ModelStore, requested: str | None, kind: str
) -> tuple[Path, ModelEntry | None]:
    from cortensor_desktop.cli.progress import TransferProgress

    with TransferProgress(json_output=ctx.json_output) as progress:
        if requested:
            return store.resolve(requested, progress=progress)
        if kind == "chat":
            entry, why = _chat_model_choice(ctx, store)
        else:
            entry = store.catalogue.of_kind("embedding")[0]
            why = "the catalogue's embedding model"
        installed = store.is_installed(entry.id)
        _say(ctx, f"using {entry.id} ({why}){'' if installed else '; installing it first'}")
        return store.pull(entry.id, progress=progress), entry


def _chat_model_choice(ctx: AppContext, store: ModelStore) -> tuple[ModelEntry, str]:
    """The fit's recommendation when it is installed, else the best model usable offline."""
    from cortensor_desktop.cli.commands.profile_cmd import stored_benchmarks
    from profiler.errors import ProfilerError
    from profiler.fit import recommend
    from profiler.probe import probe

    try:
        hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
        settings = ctx.config.fit.to_fit_settings()
        chosen = recommend(hardware, store.catalogue, settings, stored_benchmarks(ctx)).model_id
    except ProfilerError as exc:
        chosen, note = None, f"no recommendation ({exc})"
    else:
        note = f"{chosen} is recommended here but not installed"
    if chosen is not None and store.is_installed(chosen):
        entry = store.catalogue.get(chosen)
        if entry is not None:
            return entry, "the model recommended for this machine"
    entry = store.default_chat_model()
    fallback = (
        "the default chat model" if entry.default else "the best chat model available offline"
    )
    if chosen is None:
        return entry, f"{fallback}; {note}"
    return entry, f"{fallback}; {note}: `models pull {chosen}` installs it"


def _generate(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.cli.prompt import read_prompt

    args.prompt = read_prompt(args.prompt)
    from cortensor_desktop.cli.commands.models_cmd import open_store
    from engine.inference.runtime import InferenceWorker, SamplingParams

    store = open_store(ctx)
    path, entry = _resolve(ctx, store, args.model, "chat")
    params = SamplingParams(
        max_tokens=args.max_tokens or ctx.config.inference.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        deadline_s=ctx.config.inference.deadline_s,
    )
    worker = InferenceWorker(path, _settings(ctx), kind="chat")
    try:
        report = worker.start()
        for change in report.adjustments:
            _say(ctx, f"note: {change}")
        stream = worker.stream(args.prompt, params, raw=args.raw)
        for event in stream:
            if not ctx.json_output:
                ctx.stdout.write(event.text)
                ctx.stdout.flush()
        result = stream.result
    except KeyboardInterrupt:
        worker.kill()
        raise
    finally:
        worker.close()
    figures = asdict(result.figures)
    if ctx.json_output:
        ctx.emit_json(
            {
                "text": result.text,
                "model": entry.id if entry else path.name,
                "model_path": str(path),
                "finish_reason": result.finish_reason,
                "figures": figures,
                "settings": asdict(report.used),
                "adjustments": list(report.adjustments),
            }
        )
    else:
        ctx.echo()
        _say(
            ctx,
            f"[{entry.id if entry else path.name}: {result.figures.prompt_tokens} prompt tokens, "
            f"{result.figures.generated_tokens} generated, ttft {result.figures.ttft_s:.2f} s, "
            f"{result.figures.tokens_per_s:.1f} tokens/s, {result.finish_reason}]",
        )
    return 0


def _embed(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.cli.commands.models_cmd import open_store
    from engine.inference.runtime import InferenceWorker

    store = open_store(ctx)
    path, entry = _resolve(ctx, store, args.model, "embedding")
    with InferenceWorker(path, _settings(ctx, n_ctx=512), kind="embedding") as worker:
        (vector,) = worker.embed([args.text])
    if ctx.json_output:
        ctx.emit_json(
            {"embedding": vector, "dim": len(vector), "model": entry.id if entry else path.name}
        )
    else:
        ctx.echo(" ".join(f"{x:.6f}" for x in vector))
    return 0


def _bench(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.cli.commands.models_cmd import open_store
    from engine.inference.runtime import InferenceWorker, llama_cpp_version
    from engine.node.benchmarks import bench_document, store_benchmark

    store = open_store(ctx)
    path, entry = _resolve(ctx, store, args.model, "chat")
    from cortensor_desktop.cli.progress import steps

    settings = _settings(ctx)
    started = time.monotonic()
    label = f"bench: load, then {args.runs} run(s) of {args.tokens} tokens"
    with (
        steps(label, 2, json_output=ctx.json_output) as advance,
        InferenceWorker(path, settings, kind="chat") as worker,
    ):
        advance()  # the model is loaded
        result = worker.bench(runs=args.runs, gen_tokens=args.tokens)
        advance()
    quant = _quant_of(entry, path)
    model_id = entry.id if entry else path.name
    elapsed = time.monotonic() - started
    document = bench_document(result, model_id, quant, elapsed, llama_cpp_version())
    store_benchmark(ctx.database, document)
    if ctx.json_output:
        ctx.emit_json(document)
    else:
        ctx.echo(f"model       {model_id} ({quant}), {settings.n_threads} thread(s)")
        ctx.echo(f"prompt      {document['prompt_tokens_per_s']:.1f} tokens/s (median)")
        ctx.echo(f"generation  {document['gen_tokens_per_s']:.1f} tokens/s (median)")
        ctx.echo(f"peak memory {result.peak_rss_bytes / 2**20:,.0f} MiB (worker RSS)")
        ctx.echo(f"checksum    {result.output_sha256}")
        ctx.echo("stored in the database for the fit")
    return 0


def _quant_of(entry: ModelEntry | None, path: Path) -> str:
    if entry is not None:
        for variant in entry.quants:
            if variant.file_name == path.name:
                return variant.quant
        return entry.quants[0].quant
    from engine.node.benchmarks import quant_of_file

    return quant_of_file(path)
